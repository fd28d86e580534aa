import django_tables2 as tables
from django.utils.html import format_html

from core.token_pages import IssuedTokenTable, revoke_column
from keys.choices import CONFIRMABLE_REVOCATION_STATUSES
from keys.models import ApiKey, KeyException


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


class KeyColumn(tables.TemplateColumn):
    """A key (the column's value): its label linked to its page, and its prefix."""

    template_code = '<a href="{{ value.get_absolute_url }}">{{ value.label }}</a> <code class="prefix">{{ value.prefix }}…</code>'

    def __init__(self, **kwargs):
        kwargs.setdefault("verbose_name", "Key")
        super().__init__(**kwargs)


def row_id(prefix: str) -> dict:
    """Row attributes giving each row the id ``<prefix>-<pk>``, for links and tests to find it."""
    return {"id": lambda record: f"{prefix}-{record.pk}"}


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


class KeyReleaseTable(tables.Table):
    id = tables.Column(verbose_name="#")
    key = KeyColumn()
    customer = tables.Column(accessor="key__workflow__customer__name", verbose_name="Customer")
    started_at = tables.TemplateColumn(
        '{{ record.started_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.requested_by.get_username }}{% if record.context %}, {{ record.context }}{% endif %}</span>',
        verbose_name="Released",
    )
    ends_at = tables.DateTimeColumn(verbose_name="Window ends", short=True)
    status = tables.TemplateColumn(
        '<span class="badge{% if record.is_open %} badge-flag{% endif %}">{{ record.get_status_display }}</span>'
    )
    traffic = tables.TemplateColumn(
        '{% if record.traffic_calls %}{{ record.traffic_calls }} call{{ record.traffic_calls|pluralize }}'
        '{% if record.traffic_sources %}<br><span class="muted">{{ record.traffic_sources|join:", "|truncatechars:120 }}'
        '</span>{% endif %}{% else %}<span class="muted">none</span>{% endif %}',
        verbose_name="Usage in the window",
    )
    decided = tables.TemplateColumn(
        '{% if record.decided_by %}{{ record.decided_by.get_username }}, {{ record.decided_at|date:"SHORT_DATETIME_FORMAT" }}'
        '<br><span class="muted">{{ record.decision_reason|truncatechars:120 }}</span>{% else %}—{% endif %}',
        verbose_name="Decided",
    )

    class Meta:
        attrs = {"class": "data-table"}
        row_attrs = row_id("release")
        orderable = False
        empty_text = "No release matches."


class ConfirmRevocationColumn(tables.TemplateColumn):
    """An admin's form confirming that the key was revoked at the source, on the requests that need one."""

    template_code = (
        '{% if confirmable %}<form method="post" action="{% url \'keys:revocation-confirm\' record.pk %}" class="inline-form">'
        '{% csrf_token %}<input type="hidden" name="next" value="{{ request.get_full_path }}">'
        '<label class="visually-hidden" for="reference-{{ record.pk }}">Reference at the source for {{ record.key.label }}'
        '</label><input type="text" name="reference" id="reference-{{ record.pk }}" maxlength="200" required '
        'placeholder="Ticket or change no."> <button type="submit" class="button button-small button-primary">'
        'Confirm revoked</button></form>{% else %}<span class="muted">—</span>{% endif %}'
    )

    def get_context_data(self, *, record, **kwargs):
        return super().get_context_data(record=record, **kwargs) | {
            "confirmable": record.status in CONFIRMABLE_REVOCATION_STATUSES
        }


class RevocationRequestTable(tables.Table):
    """Revocation requests; the confirmation column is for admins (leave it out for anyone else)."""

    id = tables.Column(verbose_name="#")
    key = KeyColumn()
    customer = tables.Column(accessor="key__workflow__customer__name", verbose_name="Customer")
    issuing_system = tables.TemplateColumn(
        '{{ record.issuing_system.name }} <span class="muted">({{ record.issuing_system.get_kind_display }})</span>',
        verbose_name="Issuing system",
    )
    reason = tables.TemplateColumn(
        '{% if record.emergency %}<span class="badge badge-flag">Emergency</span> {% endif %}'
        '{{ record.get_reason_code_display }}<br><span class="muted">{{ record.reason }}</span>'
    )
    requested_at = tables.TemplateColumn(
        '{{ record.requested_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.requested_by.get_username }}</span>',
        verbose_name="Requested",
    )
    status = tables.TemplateColumn(
        '<span class="badge{% if record.is_open %} badge-flag{% endif %}">{{ record.get_status_display }}</span>'
        '{% if record.next_attempt_at and record.is_open %}<br><span class="muted">next call '
        '{{ record.next_attempt_at|date:"SHORT_DATETIME_FORMAT" }}</span>{% endif %}'
    )
    attempts = tables.Column(verbose_name="Calls")
    outcome = tables.TemplateColumn(
        '{% if record.confirmed_by %}Confirmed by {{ record.confirmed_by.get_username }} on '
        '{{ record.confirmed_at|date:"SHORT_DATETIME_FORMAT" }} <span class="muted">({{ record.issuer_reference }})</span>'
        '{% elif record.acknowledged_at %}Acknowledged {{ record.acknowledged_at|date:"SHORT_DATETIME_FORMAT" }}'
        '{% if record.issuer_reference %} <span class="muted">({{ record.issuer_reference }})</span>{% endif %}'
        '{% else %}<span class="muted">{{ record.last_error|truncatechars:160|default:"—" }}</span>{% endif %}',
        verbose_name="Last error / confirmation",
    )
    confirm = ConfirmRevocationColumn(verbose_name="Confirm at the source")

    class Meta:
        attrs = {"class": "data-table"}
        row_attrs = row_id("revocation")
        orderable = False
        empty_text = "No revocation requests match these filters."


class TriageColumn(tables.TemplateColumn):
    """A fingerprint-only report of a key its reporter may not see: its triage, and the form deciding an open one
    (the list is for compliance and admins, who triage)."""

    template_code = (
        '{% if triage.is_open %}<span class="badge badge-flag">'
        '{{ triage.get_status_display }}</span>'
        '{% if user_sees_everything %}'
        '<form method="post" action="{% url \'keys:exposure-triage\' record.pk %}" class="inline-form">{% csrf_token %}'
        '<input type="hidden" name="next" value="{{ request.get_full_path }}">'
        '<label class="visually-hidden" for="triage-reason-{{ record.pk }}">Why, for exposure #{{ record.pk }}</label>'
        '<input type="text" name="reason" id="triage-reason-{{ record.pk }}" maxlength="2000" required '
        'placeholder="Why"> <button type="submit" name="decision" value="revoke" class="button button-small '
        'button-danger">Revoke key</button> <button type="submit" name="decision" value="dismiss" class="button '
        'button-small">Dismiss</button></form>{% endif %}'
        '{% elif triage %}{{ triage.get_status_display }}<br><span class="muted">by '
        '{{ triage.decided_by.get_username }}: {{ triage.decision_reason|truncatechars:120 }}</span>'
        '{% else %}<span class="muted">—</span>{% endif %}'
    )
    empty_values = ()  # rendered for every row, with or without a triage

    def get_context_data(self, *, record, **kwargs):
        # A reverse one-to-one without a row raises on access: read it once, None when there is none.
        return super().get_context_data(record=record, **kwargs) | {"triage": getattr(record, "triage", None)}


class ExposureTable(tables.Table):
    id = tables.Column(verbose_name="#")
    reported_at = tables.TemplateColumn(
        '{{ record.reported_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.reported_by.get_username|default:"—" }}</span>',
        verbose_name="Reported",
    )
    key = tables.TemplateColumn(
        '{% if value %}<a href="{{ value.get_absolute_url }}">{{ value.label }}</a> <code class="prefix">{{ value.prefix }}…'
        '</code><br><span class="muted">{{ value.workflow.customer.name }} · {{ value.get_status_display }}</span>'
        '{% else %}<span class="muted">No matching key</span>{% endif %}',
        verbose_name="Key",
    )
    location = tables.Column()
    notes = tables.TemplateColumn("{{ record.notes|truncatechars:200 }}")
    source = tables.Column()
    triage = TriageColumn(verbose_name="Triage")

    class Meta:
        attrs = {"class": "data-table"}
        row_attrs = row_id("exposure")
        orderable = False
        empty_text = "No exposures reported."

    def render_source(self, record):
        return record.get_source_display()


class IntegrationTokenTable(IssuedTokenTable):
    scope = tables.TemplateColumn(
        "{% if record.issuing_system %}Issuing system: {{ record.issuing_system.name }}{% endif %}"
        "{% if record.issuing_system and record.customer %}<br>{% endif %}"
        "{% if record.customer %}Customer: {{ record.customer.name }}{% endif %}",
        verbose_name="Scope",
    )
    actions = revoke_column("keys:token-revoke")

    class Meta(IssuedTokenTable.Meta):
        sequence = ("name", "token_prefix", "scope", "acts_as", "created_at", "last_used_at", "status", "actions")
        row_attrs = row_id("token")
        empty_text = "No integration tokens match."
