"""PostgreSQL connections read ``timestamptz`` values with psycopg's C loader.

Django registers its own loader for ``timestamptz`` (``BaseTzLoader``): a subclass of psycopg's pure
Python loader that parses each value in Python and then sets its time zone. With ``USE_TZ`` and the
session's time zone UTC, which is how Django sets up every connection, psycopg's C loader gives the
same values, aware and in ``datetime.timezone.utc``, for a fraction of the CPU; every row with a time in
it (most of them here) pays the difference. Any other set-up keeps Django's loader.
"""

import datetime

from django.conf import settings


def _c_loader():
    """A loader Django's cursor set-up accepts (its own class, with ``timezone`` UTC) that loads with psycopg's
    C loader (which cannot be subclassed); None where psycopg runs without its C extension."""
    import psycopg
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader
    from psycopg.postgres import types
    from psycopg.pq import Format

    c_loader = psycopg.adapters.get_loader(types["timestamptz"].oid, Format.TEXT)
    if c_loader is None or c_loader.__module__.startswith("psycopg."):
        return None

    class UtcTimestamptzLoader(BaseTzLoader):
        timezone = datetime.UTC

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self.load = c_loader(oid, context).load  # aware, in the session's time zone: UTC

    return UtcTimestamptzLoader


_LOADER = None


def use_c_timestamp_loader(sender, connection, **kwargs):
    """``connection_created`` receiver: switch this connection's ``timestamptz`` loader to the C one."""
    global _LOADER
    if connection.vendor != "postgresql" or not settings.USE_TZ or connection.timezone is not datetime.UTC:
        return
    raw = connection.connection
    if raw is None or raw.pgconn.parameter_status(b"TimeZone") != b"UTC":
        return
    if _LOADER is None:
        _LOADER = _c_loader() or False
    if _LOADER:
        raw.adapters.register_loader("timestamptz", _LOADER)
