import django_tables2 as tables
from django.db.models import Case, F, IntegerField, Value, When
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from attestations.models import AttestationItem, Campaign, EvidenceExport
from attestations.services.progress import with_item_count_sort_keys, with_stored_counts
from keys.tables import badge


def with_progress(campaigns):
    """Large campaigns' stored counts (``progress.attach_item_counts`` sets the rows' counts once they are
    known); the counts and the percent decided as sort keys only, computed in SQL when the list is sorted by
    them (each reference to a count there repeats its subquery)."""
    return with_item_count_sort_keys(with_stored_counts(campaigns)).alias(
        progress_percent=Case(
            When(item_total=0, then=Value(0)),
            default=100 * (F("item_total") - F("item_pending")) / F("item_total"),
            output_field=IntegerField(),
        )
    )


def percent_decided(campaign) -> int:
    return 100 * (campaign.item_total - campaign.item_pending) // campaign.item_total if campaign.item_total else 0


class CampaignTable(tables.Table):
    name = tables.Column(linkify=True)
    status = tables.Column()
    schedule = tables.Column(accessor="schedule__name", verbose_name="Schedule", default="one-off")
    launched_at = tables.DateColumn(verbose_name="Launched", short=True, default="not launched")
    due_on = tables.DateColumn(verbose_name="Due", short=True, default="—")
    item_total = tables.Column(verbose_name="Items", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    item_pending = tables.Column(verbose_name="Pending", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    progress = tables.Column(verbose_name="Progress", accessor="pk", order_by=("progress_percent", "-pk"))
    default_action = tables.Column(verbose_name="On no response")

    class Meta:
        model = Campaign
        fields = (
            "name", "status", "schedule", "launched_at", "due_on", "item_total", "item_pending", "progress",
            "default_action",
        )
        attrs = {"class": "data-table"}
        empty_text = "No campaigns match these filters."

    def render_status(self, record):
        return badge("campaign", record.status, record.get_status_display())

    def render_item_pending(self, record, value):
        if record.counted_at is None:
            return value
        return format_html(
            '{} <span class="muted small" data-testid="counted-at">as of <time datetime="{}">{}</time></span>',
            value, record.counted_at.isoformat(), date_format(localtime(record.counted_at), "SHORT_DATETIME_FORMAT"),
        )

    def render_progress(self, record):
        decided = record.item_total - record.item_pending
        return progress_bar(percent_decided(record), f"{decided} of {record.item_total} decided")


def progress_bar(percent: int, title: str) -> str:
    return format_html(
        '<progress class="progress" max="100" value="{}" title="{}">{}%</progress> <span class="progress-value">{}%</span>',
        percent, title, percent, percent,
    )


class AttestationItemTable(tables.Table):
    key = tables.Column(accessor="key__label", verbose_name="Key", order_by="key__label")
    customer = tables.Column(accessor="key__workflow__customer__name", verbose_name="Customer")
    workflow = tables.Column(accessor="key__workflow__name", verbose_name="Workflow")
    reviewer = tables.Column(accessor="reviewer__username", verbose_name="Reviewer")
    stage = tables.Column(verbose_name="Stage", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    status = tables.Column()
    reason = tables.Column(verbose_name="Reason", default="—")
    recommendation = tables.Column(default="—")
    decided_by = tables.Column(accessor="decided_by__username", verbose_name="Decided by", default="—")
    decided_at = tables.DateTimeColumn(verbose_name="Decided", short=True, default="—")
    escalated_at = tables.DateColumn(verbose_name="Escalated", short=True, default="—")
    item = tables.Column(accessor="pk", verbose_name="Item", orderable=False)

    class Meta:
        model = AttestationItem
        fields = (
            "key", "customer", "workflow", "reviewer", "stage", "status", "reason", "recommendation", "decided_by",
            "decided_at",
            "escalated_at", "item",
        )
        attrs = {"class": "data-table"}
        empty_text = "No items match these filters."

    def render_key(self, record):
        return format_html(
            '<a href="{}">{}</a> <code class="prefix">{}…</code>',
            reverse("keys:detail", args=[record.key_id]), record.key.label, record.key.prefix,
        )

    def render_reviewer(self, record):
        if record.delegate_id:
            return format_html('{} <span class="muted">→ {}</span>', record.reviewer.get_username(),
                               record.delegate.get_username())
        return record.reviewer.get_username()

    def render_status(self, record):
        status = badge("item", record.status, record.get_status_display())
        if record.default_action_applied:
            return format_html('{} <span class="muted">{}</span>', status,
                               record.get_default_action_applied_display().lower())
        return status

    def render_reason(self, record):
        return record.get_reason_display()

    def render_recommendation(self, record):
        return record.get_recommendation_display()

    def render_item(self, record):
        return format_html('<a href="{}">#{}</a>', record.get_absolute_url(), record.pk)


class EvidenceExportTable(tables.Table):
    export = tables.TemplateColumn(
        '<a href="{% url \'attestations:export\' record.pk %}">{{ record.get_kind_display }} #{{ record.pk }}</a>',
        verbose_name="Export",
    )
    subject = tables.TemplateColumn("{{ record.parameters.subject }}", verbose_name="Subject")
    requested_at = tables.TemplateColumn(
        '<time datetime="{{ record.requested_at|date:\'c\' }}">{{ record.requested_at|date:"DATETIME_FORMAT" }}</time>',
        verbose_name="Requested",
    )
    requested_by = tables.Column(verbose_name="By")
    status = tables.Column(attrs={"td": {"class": lambda record: f"export-status-{record.status}"}})
    page_count = tables.Column(verbose_name="Pages", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    sha256 = tables.TemplateColumn(
        "{% if record.sha256 %}<code>{{ record.sha256|truncatechars:13 }}</code>{% endif %}", verbose_name="SHA-256"
    )
    download = tables.Column(accessor="pk", verbose_name=mark_safe('<span class="visually-hidden">Download</span>'))

    class Meta:
        attrs = {"class": "data-table"}
        orderable = False
        empty_text = "No export matches."

    def render_requested_by(self, record):
        return record.requested_by.get_username()

    def render_status(self, record):
        if record.status == EvidenceExport.Status.RENDERING:
            return f"{record.get_status_display()} ({record.progress}%)"
        return record.get_status_display()

    def render_page_count(self, record):
        return record.page_count or ""

    def render_download(self, record):
        if record.status != EvidenceExport.Status.DONE:
            return ""
        return format_html('<a href="{}">Download</a>', reverse("attestations:export-download", args=[record.pk]))


class SuccessionTable(tables.Table):
    """Departed owners' live keys, each with the successor asked or the form naming one."""

    key = tables.TemplateColumn(
        '<a href="{{ record.get_absolute_url }}">{{ record.label }}</a> <code class="prefix">{{ record.prefix }}…</code>',
        verbose_name="Key",
    )
    workflow = tables.TemplateColumn(
        '{{ record.workflow.customer.name }}<br><span class="muted">{{ record.workflow.name }}</span>',
        verbose_name="Customer / workflow",
    )
    owner = tables.Column(verbose_name="Departed owner")
    successor = tables.TemplateColumn(template_name="attestations/_succession_successor.html", verbose_name="Successor")

    class Meta:
        attrs = {"class": "data-table"}
        row_attrs = {"id": lambda record: f"succession-key-{record.pk}"}
        orderable = False
        empty_text = "No departed owner's key is waiting for you."

    def render_owner(self, record):
        return record.owner.get_username()
