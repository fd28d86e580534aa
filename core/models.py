"""The tamper-evident chain over every history record of the governed models, and the access audit."""

from django.conf import settings
from django.db import models


class NamedRecord(models.Model):
    """A record people know by its name: listed by name and shown as its name, with its creation time."""

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return self.name


class ChainHead(models.Model):
    """The single head of the history chain; its row lock serialises sealing."""

    seq = models.PositiveBigIntegerField(default=0)
    digest = models.CharField(max_length=64, default="0" * 64)
    updated_at = models.DateTimeField(auto_now=True)


class ChainLink(models.Model):
    """One sealed history record: its digest covers the record's content and the previous digest."""

    seq = models.PositiveBigIntegerField(unique=True)
    model_label = models.CharField(max_length=100)
    history_id = models.BigIntegerField()
    digest = models.CharField(max_length=64)
    prev_digest = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["model_label", "history_id"], name="one_link_per_history_record")]


class AccessAction(models.TextChoices):
    LOGIN = "login", "Signed in"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOCKED_OUT = "locked_out", "Locked out"
    LOGOUT = "logout", "Signed out"
    OTP_VERIFIED = "otp_verified", "Second factor verified"
    OTP_FAILED = "otp_failed", "Second factor refused"
    OTP_ENROLLED = "otp_enrolled", "Second factor enrolled"
    EXPORT_DOWNLOADED = "export_downloaded", "Export downloaded"
    API_TOKEN_USED = "api_token_used", "API token used"
    CONTACT_INVITED = "contact_invited", "Customer contact invited"
    CONTACT_LINK_SENT = "contact_link_sent", "Contact link sent"
    CONTACT_LINK_OPENED = "contact_link_opened", "Contact link opened"
    CONTACT_LINK_REFUSED = "contact_link_refused", "Contact link refused"
    CONTACT_CODE_SENT = "contact_code_sent", "Contact code sent"
    CONTACT_CODE_FAILED = "contact_code_failed", "Contact code refused"
    CONTACT_SIGNED_IN = "contact_signed_in", "Contact signed in with link and code"
    CONTACT_VISIT = "contact_visit", "Contact page visited"
    CONTACT_DECISION = "contact_decision", "Contact decided an item"
    CONTACT_REFUSED = "contact_refused", "Contact refused outside their pages"


class AccessRecord(models.Model):
    """Who reached the portal, when, from where, and what they did: sign-ins (failed ones too), exports
    downloaded and API token use. Written by ``core.audit.record_access``; never edited."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_records"
    )
    # The name as typed or as it was, so the record outlives the account and names unknown users.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AccessAction.choices, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["user", "-at"], name="access_by_user_recent")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.get_action_display()} {self.target}".strip()
