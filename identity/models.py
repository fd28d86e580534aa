"""People from the identity provider: SCIM clients' tokens, SCIM groups, and the chained record of every change a
provider made to a person's account."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from core.models import IssuedToken, new_salt
from core.validators import refuse_hidden_characters

USER = settings.AUTH_USER_MODEL


class ScimToken(IssuedToken):
    """A bearer token for a SCIM client (Okta, Entra ID), issued by an admin. The client's changes are recorded
    under the token's service account (``scim:<name>``), which cannot sign in."""

    name = models.CharField(max_length=100, validators=[refuse_hidden_characters])
    token_prefix = models.CharField(max_length=16)
    acts_as = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="scim_tokens",
                                help_text="The service account the client's changes are recorded under.")
    history = HistoricalRecords(excluded_fields=["last_used_at", "last_used_from"])

    class Meta:
        ordering = ["name", "-created_at"]
        verbose_name = "SCIM token"


class ScimGroup(models.Model):
    """A group pushed by the identity provider. Its members get the portal roles its display name maps to
    (``IDENTITY_GROUP_ROLES``); membership is the provider's to change."""

    display_name = models.CharField(max_length=255, unique=True, validators=[refuse_hidden_characters])
    external_id = models.CharField(max_length=255, unique=True, null=True, blank=True,
                                   help_text="The group's id at the identity provider.")
    members = models.ManyToManyField(USER, blank=True, related_name="scim_groups")
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["display_name"]
        verbose_name = "SCIM group"

    def __str__(self):
        return self.display_name


class AccountChange(models.Model):
    """One change an identity provider made to a person's account: the account's own fields (name, email,
    active), their SCIM groups and the roles those give. Append-only and chained, like lifecycle events: the
    account itself keeps no history. Which fields changed is in the clear; their values (personal) enter the
    chain as a digest salted per record, so they can be erased on request."""

    class Kind(models.TextChoices):
        PROVISIONED = "provisioned", "Provisioned"
        UPDATED = "updated", "Updated"
        DEACTIVATED = "deactivated", "Deactivated"
        REACTIVATED = "reactivated", "Reactivated"
        GROUPS = "groups", "Groups and roles changed"

    user = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="account_changes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    fields = models.JSONField(default=list, help_text="The names of the fields that changed.")
    values = models.JSONField(default=dict, help_text="{field: [before, after]}.")
    actor = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=200)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    personal_salt = models.CharField(max_length=32, default=new_salt, editable=False)

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="account_change_has_reason"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.get_kind_display()} {', '.join(self.fields)}"
