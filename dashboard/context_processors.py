from django.utils.functional import SimpleLazyObject

from core import roles as role_rules

# The navigation's badge counts pending items no further than this; "99+" stands for more.
BADGE_CAP = 99


def pending_badge(user) -> int | str:
    """The items ``user`` may decide that wait in running campaigns, for the navigation's badge on every page:
    their number up to BADGE_CAP, ``"99+"`` beyond. Counting stops there, so that a compliance officer's badge
    over a stage of 100,000 items reads what 100 cost; the inbox itself shows the full number."""
    from attestations.choices import CampaignStatus, ItemStatus
    from attestations.models import AttestationItem

    pending = (
        AttestationItem.objects.decidable_by(user, officer=role_rules.is_compliance(user))
        .filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
        .order_by()  # any rows will do for a count: no sort of every pending item before the limit
    )
    counted = pending[: BADGE_CAP + 1].count()
    return f"{BADGE_CAP}+" if counted > BADGE_CAP else counted


def roles(request):
    user = request.user
    return {
        # Read when a template asks (a decided row answered to htmx shows none of them).
        "user_is_admin": SimpleLazyObject(lambda: role_rules.is_admin(user)),
        "user_is_compliance": SimpleLazyObject(lambda: role_rules.is_compliance(user)),
        "user_sees_everything": SimpleLazyObject(lambda: role_rules.sees_everything(user)),
        "user_reads_everything": SimpleLazyObject(lambda: role_rules.reads_everything(user)),
        "user_is_auditor": SimpleLazyObject(lambda: role_rules.is_auditor(user)),
        # The grant an auditor reads under (set by core.auditors.middleware), for the banner saying until when.
        "auditor_grant": getattr(user, role_rules.AUDITOR_GRANT_ATTRIBUTE, None),
        # Counted only when a page shows the navigation badge.
        "inbox_pending_count": SimpleLazyObject(lambda: pending_badge(user) if user.is_authenticated else 0),
    }
