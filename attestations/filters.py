import django_filters
from django import forms

from attestations.choices import MAX_STAGES, CampaignStatus, ItemStatus, ReasonCode, Recommendation
from attestations.models import AttestationItem, Campaign, CampaignSchedule, EvidenceExport
from keys.models import ApiKey, Customer


class CampaignFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", label="Search",
        widget=forms.TextInput(attrs={"placeholder": "Campaign name", "type": "search"}),
    )
    status = django_filters.ChoiceFilter(choices=CampaignStatus.choices, empty_label="Any status")
    schedule = django_filters.ModelChoiceFilter(
        queryset=CampaignSchedule.objects.all(), empty_label="Any schedule", label="Schedule"
    )

    class Meta:
        model = Campaign
        fields = ["q", "status", "schedule"]


class AttestationItemFilterSet(django_filters.FilterSet):
    """The items of one campaign; customer and reviewer choices come from that campaign only."""

    status = django_filters.ChoiceFilter(choices=ItemStatus.choices, empty_label="Any status")
    customer = django_filters.ModelChoiceFilter(
        field_name="key__workflow__customer", label="Customer", queryset=Customer.objects.none(),
        empty_label="Any customer",
    )
    # A username rather than a choice: a large campaign has a thousand reviewers, too many to offer.
    reviewer = django_filters.CharFilter(
        field_name="reviewer__username", label="Reviewer", max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "Username", "type": "search"}),
    )
    recommendation = django_filters.ChoiceFilter(
        choices=[(value, label) for value, label in Recommendation.choices if value],
        empty_label="Any recommendation",
    )
    stage = django_filters.ChoiceFilter(
        choices=[(n, f"Stage {n}") for n in range(1, MAX_STAGES + 1)], empty_label="Any stage"
    )
    reason = django_filters.ChoiceFilter(choices=ReasonCode.choices, empty_label="Any release reason",
                                         label="Release reason")
    q = django_filters.CharFilter(
        field_name="key__label", lookup_expr="icontains", label="Key",
        widget=forms.TextInput(attrs={"placeholder": "Key label", "type": "search"}),
    )

    class Meta:
        model = AttestationItem
        fields = ["q", "status", "stage", "customer", "reviewer", "recommendation", "reason"]

    def __init__(self, *args, campaign: Campaign, customers=None, **kwargs):
        """``customers``: the campaign's customers when the caller knows them (progress.campaign_customers)."""
        super().__init__(*args, **kwargs)
        if customers is None:
            customers = Customer.objects.filter(workflows__keys__attestation_items__campaign=campaign).distinct()
        self.filters["customer"].queryset = customers.order_by("name")


class EvidenceExportFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=EvidenceExport.Kind.choices, empty_label="Any kind")
    status = django_filters.ChoiceFilter(choices=EvidenceExport.Status.choices, empty_label="Any status")

    class Meta:
        model = EvidenceExport
        fields = ["kind", "status"]


class SuccessionFilterSet(django_filters.FilterSet):
    """Departed owners' keys waiting for a successor."""

    owner = django_filters.CharFilter(
        field_name="owner__username", lookup_expr="icontains", label="Departed owner", max_length=150
    )

    class Meta:
        model = ApiKey
        fields = ["owner"]
