from django.utils.functional import SimpleLazyObject

from . import roles as role_rules


def _pending_items(user) -> int:
    from attestations.choices import CampaignStatus, ItemStatus
    from attestations.models import AttestationItem

    return (
        AttestationItem.objects.decidable_by(user)
        .filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
        .count()
    )


def roles(request):
    user = request.user
    return {
        "user_is_admin": role_rules.is_admin(user),
        "user_is_compliance": role_rules.is_compliance(user),
        "user_sees_everything": role_rules.sees_everything(user),
        # Counted only when a page shows the navigation badge.
        "inbox_pending_count": SimpleLazyObject(lambda: _pending_items(user) if user.is_authenticated else 0),
    }
