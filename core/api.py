"""Pieces every app's REST API shares: the error format, role permissions, and the history actor."""

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, pagination, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler

from core import keyset, roles
from core.errors import ServiceError
from core.history import attribute_change
from core.numbers import bound_number_filters


class Conflict(exceptions.APIException):
    """The request is valid but the object's state no longer allows it (e.g. an item already decided)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def service_error_payload(error: ServiceError) -> dict[str, list[str]]:
    """A refused service call as DRF's validation error shape: field -> messages, the rest under non_field_errors."""
    non_field = api_settings.NON_FIELD_ERRORS_KEY
    return {(non_field if field == "__all__" else field): list(messages) for field, messages in error.errors.items()}


def exception_handler(exc, context):
    """DRF's handler, plus: a service refusal (LifecycleError, CampaignError, ...) is a 400 with a message per field.

    Service messages name fields and states, never submitted secrets, so they are safe to return as they are.
    """
    if isinstance(exc, ServiceError):
        return Response(service_error_payload(exc), status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, whose number filters refuse a value beyond the 64-bit range with a 400 on that
    parameter (core.numbers) instead of taking it to the database."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            bound_number_filters(filterset)
        return filterset


class CursorPagination(pagination.CursorPagination):
    """Every API list, a page at a time by cursor (``results``, ``next``, ``previous``; no ``count``).

    DRF's cursor keeps the position of the first ordering column only and steps over ties with an offset; here
    the cursor holds the whole keyset (core.keyset), so a list keeps each view's own order (its queryset's
    ``order_by``) with the primary key as the tiebreak, and any page costs what the first does.
    """

    ordering = None  # the view's queryset says it
    cursor_query_description = "The cursor of a page, as given in `next` or `previous`; omit it for the first page."

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.base_url = request.build_absolute_uri()
        self.page_size = self.get_page_size(request)
        try:
            self.page = keyset.paginate(queryset, self.page_size, request.query_params.get(self.cursor_query_param))
        except keyset.InvalidCursor as refused:
            raise exceptions.NotFound(self.invalid_cursor_message) from refused
        self.display_page_controls = self.page.has_next or self.page.has_previous
        return self.page.rows

    def _link(self, cursor):
        return replace_query_param(self.base_url, self.cursor_query_param, cursor) if cursor else None

    def get_next_link(self):
        return self._link(self.page.next_cursor)

    def get_previous_link(self):
        return self._link(self.page.previous_cursor)


class SlugRelatedField(serializers.SlugRelatedField):
    """DRF's, refusing a value holding a NUL character (which PostgreSQL cannot compare with text) before the
    query, as DRF's CharField does."""

    default_error_messages = {"null_characters": "Null characters are not allowed."}

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("null_characters")
        return super().to_internal_value(data)


class RolePermission(permissions.BasePermission):
    """Allow a signed-in request when ``allows_request(request)`` says so, by default ``allows(user)``;
    subclasses name the role rule.

    Object visibility is not checked here: views filter their querysets with the models'
    ``visible_to`` so that an object the caller may not see is a 404, never a 403.
    """

    message = "Your role does not allow this."

    def allows(self, user) -> bool:
        raise NotImplementedError

    def allows_request(self, request) -> bool:
        return self.allows(request.user)

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and self.allows_request(request))


class SeesEverything(RolePermission):
    message = "Only compliance and admins may do this."

    def allows(self, user) -> bool:
        return roles.sees_everything(user)


class SeesEverythingAuditorsRead(RolePermission):
    """Compliance and admins; an auditor while their grant lasts, for reads only."""

    message = "Only compliance and admins may do this."

    def allows_request(self, request) -> bool:
        user = request.user
        return roles.sees_everything(user) or (request.method in permissions.SAFE_METHODS
                                               and roles.reads_everything(user))


class AdminWritesOthersRead(RolePermission):
    """Any signed-in user reads (their querysets decide what); only admins write."""

    message = "Only admins may change this."

    def allows_request(self, request) -> bool:
        return request.method in permissions.SAFE_METHODS or roles.is_admin(request.user)


class GovernedModelSerializer(serializers.ModelSerializer):
    """A plain create or update of a governed model, recorded in its history with the API caller and a reason.

    The history middleware holds the Django request, whose user DRF sets once a token is authenticated;
    the actor is set explicitly anyway so the record never depends on middleware order.
    """

    def _actor(self):
        request = self.context.get("request")
        return request.user if request is not None else None

    def create(self, validated_data):
        many = {name: validated_data.pop(name) for name in list(validated_data)
                if isinstance(self.fields.get(name), serializers.ManyRelatedField)}
        instance = self.Meta.model(**validated_data)
        attribute_change(instance, self._actor(), "created through the API")
        instance.save()
        for name, values in many.items():
            getattr(instance, name).set(values)
        return instance

    def update(self, instance, validated_data):
        attribute_change(instance, self._actor(), "changed through the API")
        return super().update(instance, validated_data)


class DetailSerializer(serializers.Serializer):
    """The body of a refusal that is not about a field (403, 404, 409)."""

    detail = serializers.CharField()


