import django_tables2 as tables
from django.utils.html import format_html

from .models import ApiKey, KeyException


def badge(kind: str, value: str, display: str) -> str:
    return format_html('<span class="badge badge-{}-{}">{}</span>', kind, value, display)


class ApiKeyTable(tables.Table):
    label = tables.Column(linkify=True)
    prefix = tables.Column(attrs={"td": {"class": "mono"}})
    customer = tables.Column(accessor="workflow__customer__name", verbose_name="Customer")
    workflow = tables.Column(accessor="workflow__name", verbose_name="Workflow")
    environment = tables.Column(accessor="workflow__environment", verbose_name="Environment")
    owner = tables.Column(accessor="owner__username", verbose_name="Owner")
    status = tables.Column()
    risk_tier = tables.Column(verbose_name="Risk")
    next_review_on = tables.DateColumn(verbose_name="Next review", short=True)
    expires_on = tables.DateColumn(verbose_name="Expires", short=True)
    last_used_at = tables.DateTimeColumn(verbose_name="Last used", short=True, default="never")

    class Meta:
        model = ApiKey
        fields = (
            "label", "prefix", "customer", "workflow", "environment", "owner",
            "status", "risk_tier", "next_review_on", "expires_on", "last_used_at",
        )
        attrs = {"class": "data-table"}
        empty_text = "No keys match these filters."

    def render_status(self, record):
        return badge("status", record.status, record.get_status_display())

    def render_risk_tier(self, record):
        return badge("risk", record.risk_tier, record.get_risk_tier_display())

    def render_environment(self, record):
        return record.workflow.get_environment_display()


class KeyExceptionTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("keys:exception", {"pk": tables.A("pk")}))
    key = tables.Column(accessor="key__label", verbose_name="Key", linkify=lambda record: record.key.get_absolute_url())
    customer = tables.Column(accessor="key__workflow__customer__name", verbose_name="Customer")
    kind = tables.Column()
    status = tables.Column()
    due = tables.DateColumn(accessor="due_on", verbose_name="Due", short=True, orderable=False)
    requested_by = tables.Column(accessor="requested_by__username", verbose_name="Requested by")
    requested_at = tables.DateColumn(verbose_name="Requested", short=True)
    decided_by = tables.Column(accessor="decided_by__username", verbose_name="Decided by", default="—")

    class Meta:
        model = KeyException
        fields = ("id", "key", "customer", "kind", "status", "due", "requested_by", "requested_at", "decided_by")
        attrs = {"class": "data-table"}
        empty_text = "No exceptions match these filters."

    def render_kind(self, record):
        return record.get_kind_display().split(" (")[0]

    def render_status(self, record):
        text = badge("exception", record.status, record.get_status_display())
        if record.lapsed_on:
            text += " " + badge("flag", "lapsed", "Lapsed")
        return text
