from django.utils.functional import SimpleLazyObject

from core import roles as role_rules


def _pending_items(user) -> int:
    from attestations.choices import CampaignStatus, ItemStatus
    from attestations.models import AttestationItem

    return (
        AttestationItem.objects.decidable_by(user, officer=role_rules.is_compliance(user))
        .filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
        .count()
    )


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
        "inbox_pending_count": SimpleLazyObject(lambda: _pending_items(user) if user.is_authenticated else 0),
    }
