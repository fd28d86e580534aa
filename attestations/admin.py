"""The Django admin for campaigns: schedules are edited here; campaigns and items change state only
through attestations.services.campaigns (admin actions), never by a plain save."""

from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from attestations.choices import CampaignStatus, MissingSignoff
from attestations.models import AttestationItem, Campaign, CampaignSchedule, EvidenceExport, Notification, OwnershipTransfer
from attestations.services import campaigns
from attestations.stages import clean_stages
from core.admin import ReadOnlyAdminMixin, apply_to_selected


class CampaignScheduleForm(forms.ModelForm):
    """The schedule's JSON lists: an emptied box is an empty list (the columns hold no null), and the stages are
    written in a box as JSON, checked by the model field's validator."""

    class Meta:
        model = CampaignSchedule
        # The admin asks for the fields of its fieldsets; these are the ones cleaned here.
        fields = ("environments", "risk_tiers", "reminder_days", "stages", "missing_signoff")
        widgets = {"stages": forms.Textarea(attrs={"rows": 8, "cols": 80})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["missing_signoff"].required = False  # left out: keep the earlier decision, the default

    def clean_missing_signoff(self):
        return self.cleaned_data.get("missing_signoff") or MissingSignoff.KEEP

    def _list(self, name):
        value = self.cleaned_data.get(name)
        return [] if value in (None, "") else value

    def clean_environments(self):
        return self._list("environments")

    def clean_risk_tiers(self):
        return self._list("risk_tiers")

    def clean_reminder_days(self):
        return self._list("reminder_days")

    def clean_stages(self):
        # Checked here, so that a refusal is said once, beside the box (the model's clean would repeat it on top).
        return clean_stages(self._list("stages"))


@admin.register(CampaignSchedule)
class CampaignScheduleAdmin(SimpleHistoryAdmin):
    form = CampaignScheduleForm
    list_display = ("name", "is_active", "cadence_days", "next_launch_on", "duration_days", "default_action")
    list_filter = ("is_active", "default_action")
    search_fields = ("name",)
    filter_horizontal = ("customers", "workflows")
    fieldsets = (
        (None, {"fields": ("name", "is_active", "cadence_days", "next_launch_on")}),
        ("Scope", {"fields": ("customers", "workflows", "environments", "risk_tiers", "due_for_review_only",
                              "unused_days", "stale_only", "rotation_due_only", "under_exception_only", "key_filter")}),
        ("Rules", {"fields": ("duration_days", "reminder_days", "reminder_every_days", "escalation_days",
                              "default_action", "require_justification", "review_cadence_days",
                              "exception_review_cadence_days", "release_grace_days", "missing_signoff",
                              "separation_of_duties")}),
        ("Review stages", {
            "fields": ("stages",),
            "description": "With stages, the campaign's duration is their sum. Empty: one stage of the duration "
                           "above, reviewed by the key's owner.",
        }),
    )


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ("name", "status", "schedule", "launched_at", "due_on", "closed_at", "default_action")
    list_filter = ("status", "default_action", "schedule")
    search_fields = ("name",)
    list_select_related = ("schedule",)
    actions = ["launch", "close"]

    @admin.action(description="Launch the selected draft campaigns")
    def launch(self, request, queryset):
        apply_to_selected(self, request, queryset.filter(status=CampaignStatus.DRAFT),
                          lambda campaign, actor: campaigns.launch_campaign(campaign, actor=actor),
                          verb="launched", noun="campaign")

    @admin.action(description="Close the selected active campaigns (applies the default action)")
    def close(self, request, queryset):
        apply_to_selected(self, request, queryset.filter(status=CampaignStatus.ACTIVE),
                          lambda campaign, actor: campaigns.close_campaign(campaign, actor=actor),
                          verb="closed", noun="campaign")

    def has_change_permission(self, request, obj=None):
        # Actions need change permission; the form itself stays read-only through get_readonly_fields.
        return request.user.has_perm("attestations.change_campaign")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Campaign._meta.fields] + ["customers", "workflows"]


@admin.register(AttestationItem)
class AttestationItemAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ("key", "campaign", "reviewer", "delegate", "status", "recommendation", "decided_at")
    list_filter = ("status", "campaign", "recommendation", "exception_lapsed")
    search_fields = ("key__label", "key__prefix", "reviewer__username")
    list_select_related = ("key", "campaign", "reviewer", "delegate")
    raw_id_fields = ("key", "reviewer", "delegate")


@admin.register(OwnershipTransfer)
class OwnershipTransferAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ("key", "from_user", "to_user", "status", "requested_at", "answered_at")
    list_filter = ("status",)
    list_select_related = ("key", "from_user", "to_user")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ("campaign", "kind", "recipient", "sequence", "item_count", "sent_at")
    list_filter = ("kind",)
    list_select_related = ("campaign", "recipient")


@admin.register(EvidenceExport)
class EvidenceExportAdmin(admin.ModelAdmin):
    list_display = ("pk", "kind", "status", "requested_by", "requested_at", "page_count", "sha256", "signed")
    list_filter = ("kind", "status", "signed")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
