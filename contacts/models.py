"""Customer contacts: named owners at the customer who attest their keys through an emailed link.

A contact is a Django user with an unusable password (so ``ApiKey.owner`` and campaign items need no
special case) plus this profile. Links and one-time codes are stored only as hashes.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from contacts.choices import LinkPurpose, LinkState
from core import roles
from core.models import new_salt
from core.validators import refuse_hidden_characters
from keys.models import Customer

USER = settings.AUTH_USER_MODEL


class CustomerContactQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Compliance and admins see every contact; nobody else sees any."""
        if not user.is_authenticated or not roles.sees_everything(user):
            return self.none()
        return self


class CustomerContact(models.Model):
    user = models.OneToOneField(USER, on_delete=models.PROTECT, related_name="customer_contact")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="contacts")
    name = models.CharField(max_length=200, validators=[refuse_hidden_characters])
    email = models.EmailField(unique=True)
    invited_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    invited_at = models.DateTimeField(default=timezone.now)
    is_active = models.BooleanField(default=True)
    # The chain covers digests of name and email salted with this, so both can be erased on request.
    personal_salt = models.CharField(max_length=32, default=new_salt, editable=False)
    erased_at = models.DateTimeField(null=True, blank=True, help_text="When the contact's personal data was erased.")
    history = HistoricalRecords()

    objects = CustomerContactQuerySet.as_manager()

    class Meta:
        ordering = ["customer__name", "name", "pk"]

    def __str__(self):
        return f"{self.name} <{self.email}> ({self.customer})"


class AccessLink(models.Model):
    """One emailed sign-in link: expiring, single-use, superseded by the next one sent.

    ``token_hash`` is SHA-256 of the random token in the link; ``code_hash`` an HMAC of the one-time
    code under the server's secret key. Neither the token nor the code is stored.
    """

    contact = models.ForeignKey(CustomerContact, on_delete=models.CASCADE, related_name="links")
    token_hash = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=20, choices=LinkPurpose.choices)
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    superseded_at = models.DateTimeField(null=True, blank=True)
    code_hash = models.CharField(max_length=64, blank=True)
    code_expires_at = models.DateTimeField(null=True, blank=True)
    codes_sent = models.PositiveSmallIntegerField(default=0)
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"{self.get_purpose_display()} link for {self.contact.email} ({self.state_label})"

    @property
    def state(self) -> str:
        if not self.contact.is_active or not self.contact.user.is_active:
            return LinkState.INACTIVE
        if self.used_at:
            return LinkState.USED
        if self.superseded_at:
            return LinkState.SUPERSEDED
        if self.failed_attempts >= settings.CONTACT_CODE_MAX_FAILURES:
            return LinkState.LOCKED
        if self.expires_at <= timezone.now():
            return LinkState.EXPIRED
        return LinkState.VALID

    @property
    def state_label(self) -> str:
        return LinkState(self.state).label
