"""Who may decide an item is one rule (attestations.models.may_decide): the inbox and API list, the item's
visibility, the item page's check and the locked read of a decision answer alike for the reviewer, a
delegate, a former delegate, the key's new owner, another owner and compliance."""

import pytest
from django.contrib.auth.models import AnonymousUser

from attestations.choices import Decision
from attestations.models import AttestationItem, may_decide
from attestations.services import campaigns, decisions
from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(owner, other_owner, compliance_user, admin_user):
    """alice reviews both items; bob was the delegate of the first, then erin; frank owns the second key
    now but was not its reviewer at launch; grace is another owner."""
    keys = [factories.ApiKeyFactory(owner=owner) for _ in range(2)]
    factories.ApiKeyFactory(owner=other_owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    first, second = (campaign.items.get(key=key) for key in keys)
    erin, frank, grace = (factories.OwnerFactory(username=name) for name in ("erin", "frank", "grace"))
    decisions.record_decision(first, actor=owner, decision=Decision.DELEGATE, to=other_owner.username)
    decisions.record_decision(first, actor=owner, decision=Decision.DELEGATE, to=erin.username)
    lifecycle.change_owner(keys[1], actor=admin_user, new_owner=frank, reason="moved teams")
    return {
        "reviewer": (owner, {first, second}),
        "delegate": (erin, {first}),
        "former delegate": (other_owner, {campaign.items.get(reviewer=other_owner)}),
        "key's new owner": (frank, set()),
        "another owner": (grace, set()),
        "compliance": (compliance_user, set()),
    }


def test_every_reading_of_who_decides_agrees(people):
    items = list(AttestationItem.objects.order_by("pk"))
    for role, (user, expected) in people.items():
        assert set(AttestationItem.objects.decidable_by(user)) == expected, role
        assert {item for item in items if decisions.can_decide(user, item)} == expected, role
        assert set(AttestationItem.objects.filter(may_decide(user.pk))) == expected, role
        if role != "compliance":
            assert set(AttestationItem.objects.visible_to(user)) == expected, role


def test_a_decision_is_refused_to_everyone_the_rule_leaves_out(people):
    _, reviewed = people["reviewer"]
    for role, (user, _) in people.items():
        for item in reviewed - people[role][1]:
            with pytest.raises(decisions.NotAllowedToDecide):
                decisions.record_decision(item, actor=user, decision=Decision.CONFIRM, justification="x", affirm=True)
    delegate, (delegated,) = people["delegate"]
    decided = decisions.record_decision(delegated, actor=delegate, decision=Decision.CONFIRM, justification="x",
                                        affirm=True)
    assert decided.decided_by == delegate


def test_anonymous_decides_nothing(people):
    anonymous = AnonymousUser()
    assert not AttestationItem.objects.decidable_by(anonymous).exists()
    assert not AttestationItem.objects.visible_to(anonymous).exists()
    assert not any(decisions.can_decide(anonymous, item) for item in AttestationItem.objects.all())
