"""Access records kept for ``ACCESS_RECORD_RETENTION_DAYS``, then deleted by a recorded, chained purge."""

import datetime

from django.conf import settings
from django.utils import timezone

from core import chain
from core.models import AccessRecord


def purge_access_records(now=None):
    """Delete access records older than the retention period (never younger ones); returns the ``ChainPurge``."""
    days = settings.ACCESS_RECORD_RETENTION_DAYS
    if days <= 0:
        return None
    older_than = (now or timezone.now()) - datetime.timedelta(days=days)
    return chain.purge_rows(AccessRecord, older_than=older_than, time_field="at",
                            reason=f"retention of {days} days ended")
