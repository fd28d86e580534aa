"""Threads of one test on one database, on SQLite as on PostgreSQL.

On PostgreSQL the threads simply connect to the test database. On SQLite, pytest-django's test database
lives in memory and threads reach it through SQLite's shared cache, which locks per table and never waits:
nothing like the database file the portal is served from. ``file_for_threads()`` copies the in-memory
database (schema and rows) to a file and points new connections at it for the duration, so the threads meet
the file's locking with the settings' busy timeout and transaction mode. Read results inside the block from
another thread (``in_a_thread``): the test's own connection stays on the in-memory copy.
"""

import contextlib
import sqlite3

from django.conf import settings
from django.db import connection

from tests.attestations.test_concurrency_and_worker import _in_threads


@contextlib.contextmanager
def file_for_threads(directory):
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield
        return
    path = directory / "threads.sqlite3"
    connection.ensure_connection()
    target = sqlite3.connect(path)
    try:
        connection.connection.backup(target)
    finally:
        target.close()
    database = settings.DATABASES["default"]
    in_memory = database["NAME"]
    # The connections handler hands this same dict to every new connection (one per thread).
    database["NAME"] = str(path)
    try:
        yield
    finally:
        database["NAME"] = in_memory


def in_a_thread(work):
    """``work()`` on a connection of its own (inside ``file_for_threads``: on the file)."""
    [outcome] = _in_threads(1, lambda n: work())
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
