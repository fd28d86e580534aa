"""The registry's REST endpoints. Visibility comes from the models' querysets; every state change from keys.services.lifecycle."""

from django.contrib.auth import get_user_model
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from core.api import AdminWritesOthersRead
from keys.api.permissions import CanRevokeKey, IsAdminOrIntegration, scope_keys_for_request
from keys.api.serializers import (
    ApiKeySerializer,
    CustomerSerializer,
    KeyHistoryEntrySerializer,
    RegisterKeySerializer,
    RevokeKeySerializer,
    WorkflowSerializer,
)
from keys.choices import Environment, RevocationReason, WorkflowStatus
from keys.filters import ApiKeyFilterSet, visible_customers, visible_workflows
from keys.models import ApiKey, LifecycleEvent, Workflow
from keys.services import lifecycle, releases
from keys.services.tokens import in_scope, request_token
from keys.views.keys import EVENT_MATCH_WINDOW

User = get_user_model()


class TakesSecretOnCreate:
    """For a viewset whose ``create`` takes a key's secret: the posted secret is kept out of error reports, and
    ``create`` reads its own serializer (``create_serializer_class``) while the answers use ``serializer_class``."""

    create_serializer_class = None

    def get_serializer_class(self):
        return self.create_serializer_class if self.action == "create" else super().get_serializer_class()

    @method_decorator(sensitive_post_parameters("secret"))
    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)


class CustomerViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Customers: compliance and admins see all, owners those of keys they can see; admins create and edit."""

    serializer_class = CustomerSerializer
    permission_classes = [AdminWritesOthersRead]
    integration_token_actions = {"list", "retrieve"}
    filterset_fields = ["contract_status"]

    def get_queryset(self):
        return visible_customers(self.request).select_related("account_manager").order_by("name")


class WorkflowFilterSet(filters.FilterSet):
    environment = filters.ChoiceFilter(choices=Environment.choices)
    status = filters.ChoiceFilter(choices=WorkflowStatus.choices)

    class Meta:
        model = Workflow
        fields = ["customer", "environment", "status"]


class WorkflowViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Workflows: the same visibility as customers; admins create and edit."""

    serializer_class = WorkflowSerializer
    permission_classes = [AdminWritesOthersRead]
    integration_token_actions = {"list", "retrieve"}
    filterset_class = WorkflowFilterSet

    def get_queryset(self):
        return visible_workflows(self.request).select_related(
            "business_owner", "technical_steward"
        ).order_by("customer__name", "name")


def key_history(key: ApiKey) -> list[dict]:
    """The key's lifecycle events and history records, newest first, with raw values and usernames.

    A lifecycle step writes both an event and a record (same actor and reason, moments apart): they
    are returned as one entry; a record without an event (an admin edit) stands alone.
    """
    events = list(LifecycleEvent.objects.filter(key=key).select_related("actor").order_by("at", "pk"))
    records = list(key.history.select_related("history_user").order_by("history_date", "history_id"))
    changes = _record_changes(records)
    entries, unmatched = [], list(events)
    for record in records:
        reason = record.history_change_reason or ""
        event = next((e for e in unmatched if e.actor_id == record.history_user_id and e.reason[:100] == reason
                      and abs(e.at - record.history_date) <= EVENT_MATCH_WINDOW), None)
        if event is not None:
            unmatched.remove(event)
            entry = {**_event_entry(event), "source": "event+record"}
        else:
            entry = {
                "at": record.history_date,
                "source": "record",
                "action": {"+": "created", "-": "deleted"}.get(record.history_type, "changed"),
                "actor": record.history_user.get_username() if record.history_user else None,
                "reason": reason,
                "from_status": "",
                "to_status": "",
                "details": {},
            }
        entry["changes"] = changes.get(record.history_id, [])
        entries.append(entry)
    entries.extend({**_event_entry(event), "changes": []} for event in unmatched)
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return entries


def _event_entry(event: LifecycleEvent) -> dict:
    return {
        "at": event.at,
        "source": "event",
        "action": event.action,
        "actor": event.actor.get_username(),
        "reason": event.reason,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "details": event.details,
    }


def _record_changes(records) -> dict[int, list[dict]]:
    """Each record's changed fields against the one before, with users named by username."""
    deltas = {
        newer.history_id: newer.diff_against(older, foreign_keys_are_objs=False).changes
        for older, newer in zip(records, records[1:], strict=False)
    }
    user_fields = {f.name for f in ApiKey._meta.get_fields() if f.is_relation and f.related_model is User}
    user_ids = {v for changes in deltas.values() for c in changes if c.field in user_fields for v in (c.old, c.new) if v}
    usernames = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "username"))

    def value(field, raw):
        return usernames.get(raw, raw) if field in user_fields and raw is not None else raw

    return {
        history_id: [{"field": c.field, "old": value(c.field, c.old), "new": value(c.field, c.new)} for c in changes]
        for history_id, changes in deltas.items()
    }


@extend_schema_view(
    create=extend_schema(
        request=RegisterKeySerializer, responses={201: ApiKeySerializer},
        description="Register a key (admins). It starts as `pending`. Send the `secret` (fingerprinted and dropped, "
                    "never stored or returned) or its `fingerprint` with a `prefix`.",
    ),
)
class ApiKeyViewSet(TakesSecretOnCreate, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """API keys the caller may see (an integration token: the keys of its scope); another user's key is a 404."""

    serializer_class = ApiKeySerializer
    create_serializer_class = RegisterKeySerializer
    filterset_class = ApiKeyFilterSet
    integration_token_actions = {"list", "retrieve", "history", "create", "revoke"}

    def get_queryset(self):
        return scope_keys_for_request(self.request, ApiKey.objects).select_related(
            "workflow__customer", "issuing_system", "owner", "steward", "approved_by"
        ).order_by("workflow__customer__name", "label", "pk")

    def get_permissions(self):
        if self.action == "create":
            return [IsAdminOrIntegration()]
        if self.action == "revoke":
            return [IsAuthenticated(), CanRevokeKey()]
        return [IsAuthenticated()]

    @method_decorator(sensitive_variables())
    def create(self, request, *args, **kwargs):
        token = request_token(request)
        data = request.data
        if token is not None and token.issuing_system_id and hasattr(data, "get") and "issuing_system" not in data:
            data = {**data, "issuing_system": token.issuing_system_id}
        serializer = self.get_serializer(data=data)
        serializer.is_valid(raise_exception=True)
        if token is not None and not in_scope(token, workflow=serializer.validated_data["workflow"],
                                              issuing_system=serializer.validated_data["issuing_system"]):
            raise ValidationError({"workflow": ["This token may register keys only for its own customer or "
                                                "issuing system."]})
        key = lifecycle.register_key(actor=request.user, **serializer.validated_data)
        key = self.get_queryset().get(pk=key.pk)
        return Response(ApiKeySerializer(key, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    # One key's history is short and assembled in Python (events matched to records): paged by number.
    @extend_schema(responses=KeyHistoryEntrySerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=PageNumberPagination)
    def history(self, request, pk=None):
        """The key's lifecycle events and history records, newest first (who, when, action, reason, changed fields)."""
        key = self.get_object()
        entries = key_history(key)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(KeyHistoryEntrySerializer(page, many=True).data)

    @extend_schema(request=RevokeKeySerializer, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def revoke(self, request, pk=None):
        """Revoke the key (admins, or the key's owner). Revocation is final; an illegal step is a 400."""
        key = self.get_object()
        serializer = RevokeKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        grace_days = data.pop("grace_days", None)
        if grace_days:
            releases.release_key(key, actor=request.user, grace_days=grace_days, context="API",
                                 reason_code=data["reason_code"],
                                 reason=data.get("reason") or RevocationReason(data["reason_code"]).label)
        else:
            lifecycle.revoke_key(key, actor=request.user, **data)
        key = self.get_queryset().get(pk=key.pk)
        return Response(ApiKeySerializer(key, context=self.get_serializer_context()).data)

