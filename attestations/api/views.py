"""Campaigns (compliance and admins) and attestation items (their reviewers) over REST; every change via campaigns.py."""

from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from attestations.api.serializers import (
    AttestationItemSerializer,
    BulkDecisionResultSerializer,
    BulkDecisionSerializer,
    CampaignCloseSerializer,
    CampaignCreateSerializer,
    CampaignDetailSerializer,
    CampaignLaunchSerializer,
    CampaignSerializer,
    DecisionSerializer,
)
from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services.campaigns import close_campaign, create_campaign, launch_campaign
from attestations.services.decisions import (
    AlreadyDecided,
    NotAllowedToDecide,
    bulk_decide,
    can_decide,
    record_decision,
)
from attestations.services.progress import attach_item_counts, with_stored_counts
from core.api import Conflict, DetailSerializer, SeesEverythingAuditorsRead

NOT_YOURS = "Only the assigned reviewer or their delegate can decide this item."

REFUSED = {
    400: OpenApiResponse(description="Refused: a message per field, others under `non_field_errors`."),
    403: OpenApiResponse(DetailSerializer, description="Not signed in, or the role does not allow it."),
    404: OpenApiResponse(DetailSerializer, description="No such object among those the caller may see."),
}


def _with_counts(campaigns):
    """The campaigns shown with their ``item_count`` and ``pending_count`` (a large campaign's as stored)."""
    if campaigns is None:
        return None
    return attach_item_counts(campaigns, total="item_count", pending="pending_count")


class CampaignFilterSet(filters.FilterSet):
    status = filters.ChoiceFilter(choices=CampaignStatus.choices)

    class Meta:
        model = Campaign
        fields = ["status"]


@extend_schema_view(
    create=extend_schema(request=CampaignCreateSerializer, responses={201: CampaignDetailSerializer, **REFUSED}),
)
class CampaignViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Attestation campaigns, for compliance and admins only (auditors read them)."""

    permission_classes = [SeesEverythingAuditorsRead]
    filterset_class = CampaignFilterSet

    def get_queryset(self):
        campaigns = (
            Campaign.objects.select_related("created_by", "launched_by", "closed_by")
            .prefetch_related("customers", "workflows")
            .order_by("-created_at", "-pk")
        )
        return with_stored_counts(campaigns)

    def paginate_queryset(self, queryset):
        return _with_counts(super().paginate_queryset(queryset))

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(_with_counts([self.get_object()])[0]).data)

    def get_serializer_class(self):
        return CampaignSerializer if self.action == "list" else CampaignDetailSerializer

    def _reloaded(self, campaign: Campaign) -> Campaign:
        return _with_counts([self.get_queryset().get(pk=campaign.pk)])[0]

    def create(self, request, *args, **kwargs):
        serializer = CampaignCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = create_campaign(actor=request.user, **serializer.validated_data)
        data = CampaignDetailSerializer(self._reloaded(campaign), context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: CampaignLaunchSerializer, **REFUSED})
    @action(detail=True, methods=["post"], filterset_class=None)
    def launch(self, request, pk=None):
        """Launch a draft campaign: one item per key in scope, assigned to its owner. Launching again creates nothing."""
        created = launch_campaign(self.get_object(), actor=request.user)
        campaign = self._reloaded(self.get_object())
        campaign.items_created = created
        return Response(CampaignLaunchSerializer(campaign, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses={200: CampaignCloseSerializer, **REFUSED})
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request, pk=None):
        """Close an active campaign, applying its default action to every undecided item. Closing again changes nothing."""
        applied = close_campaign(self.get_object(), actor=request.user)
        campaign = self._reloaded(self.get_object())
        campaign.default_action_applied = {action: applied.get(action, 0) for action in DefaultAction.values}
        campaign.kept_without_signoff = applied.get("kept", 0)
        return Response(CampaignCloseSerializer(campaign, context=self.get_serializer_context()).data)


class AttestationItemFilterSet(filters.FilterSet):
    status = filters.ChoiceFilter(choices=ItemStatus.choices)
    campaign = filters.NumberFilter(field_name="campaign_id")
    reviewer = filters.CharFilter(field_name="reviewer__username", help_text="Username of the assigned reviewer.")

    class Meta:
        model = AttestationItem
        fields = ["status", "campaign", "reviewer"]


ITEM_COLUMNS = (
    "id", "campaign", "key", "status", "recommendation", "reviewer", "delegate", "decided_by", "decided_at", "affirmed",
    "justification", "reassigned_to", "escalated_at", "default_action_applied", "exception", "exception_lapsed",
    "exception_reaffirmed", "campaign__name", "campaign__due_on", "key__label", "key__prefix", "key__status",
    "key__scopes", "key__risk_tier", "key__issued_on", "key__expires_on", "key__last_used_at", "key__workflow",
    "key__owner", "key__workflow__name", "key__workflow__purpose", "key__workflow__data_scope",
    "key__workflow__environment", "key__workflow__customer", "key__workflow__customer__name", "key__owner__username",
    "reviewer__username", "delegate__username", "decided_by__username", "reassigned_to__username",
    "stage", "decisions", "reason", "reviewer_role", "escalated_to", "escalated_to__username",
)


class AttestationItemViewSet(viewsets.ReadOnlyModelViewSet):
    """The caller's attestation items (as reviewer or delegate); compliance and admins see every item.

    An item the caller may not see is a 404; one they see but may not decide is a 403 on `decide`.
    """

    serializer_class = AttestationItemSerializer
    filterset_class = AttestationItemFilterSet

    def _items(self):
        return AttestationItem.objects.visible_to(self.request.user)

    def get_queryset(self):
        # Only the columns the serializer shows: five user tables joined in full cost more to build than to run.
        return self._items().select_related(
            "campaign", "key__workflow__customer", "key__owner", "reviewer", "delegate", "decided_by", "reassigned_to"
        ).select_related("escalated_to").only(*ITEM_COLUMNS).order_by("campaign_id", "pk")

    @extend_schema(
        request=DecisionSerializer,
        responses={
            200: AttestationItemSerializer,
            **REFUSED,
            409: OpenApiResponse(DetailSerializer, description="The item was already decided (or expired at close)."),
        },
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def decide(self, request, pk=None):
        """Confirm, release, reassign or delegate the item, once. A decided item is a 409 Conflict."""
        serializer = DecisionSerializer(data=request.data)
        if not serializer.is_valid():
            # Unseen (404), not theirs (403) and already decided (409) come before the fields (400).
            item = self._visible(pk)
            if not can_decide(request.user, item):
                raise PermissionDenied(NOT_YOURS)
            if item.status != ItemStatus.PENDING:
                raise Conflict(f"This item was already decided ({item.get_status_display().lower()}).")
            raise ValidationError(serializer.errors)
        # record_decision reads the item under its lock and refuses anyone without the decide permission
        # (the reviewer and the delegate, who see the item); a refused caller who may not see it gets a 404.
        try:
            decided = record_decision(AttestationItem(pk=self._item_id(pk)), actor=request.user,
                                      **serializer.validated_data)
        except AttestationItem.DoesNotExist:
            raise Http404 from None
        except NotAllowedToDecide as refused:
            self._visible(pk)
            raise PermissionDenied(refused.messages[0]) from None
        except AlreadyDecided as refused:
            raise Conflict(refused.messages[0]) from None
        return Response(self.get_serializer(decided.attach_shown_rows(request.user)).data)

    @extend_schema(request=BulkDecisionSerializer, responses={200: BulkDecisionResultSerializer, **REFUSED})
    @action(detail=False, methods=["post"], url_path="bulk-decide", filterset_class=None)
    def bulk_decide(self, request):
        """One decision on several items, with one justification and reason code. Each item is decided through
        the same rules as `decide`, or refused on its own: the answer is 200 with a result per item (`done`, or
        `refused` with why). What every item would lack (the affirmation, a reason code, the person named) is a
        400 before anything is decided. An item the caller may not see is refused as `No such item.`"""
        serializer = BulkDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        results = bulk_decide(data.pop("items"), actor=request.user, **data)
        body = {
            "done": sum(1 for r in results if r.done),
            "refused": sum(1 for r in results if not r.done),
            "results": [{"item": r.item, "result": "done" if r.done else "refused", "status": r.status,
                         "errors": r.errors} for r in results],
        }
        return Response(BulkDecisionResultSerializer(body).data)

    def _visible(self, pk) -> AttestationItem:
        item = get_object_or_404(self._items(), pk=pk)
        self.check_object_permissions(self.request, item)
        return item

    @staticmethod
    def _item_id(pk) -> int:
        try:
            return int(pk)
        except (TypeError, ValueError):
            raise Http404 from None
