"""Pieces every app's REST API shares: the error format, role permissions, and the history actor."""

import copy

from django.db.models import TextChoices
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent, build_choice_description_list
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from attestations import choices as attestation_choices
from keys import choices as key_choices

from . import roles
from .errors import ServiceError


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


class AdminWritesOthersRead(RolePermission):
    """Any signed-in user reads (their querysets decide what); only admins write."""

    message = "Only admins may change this."

    def allows_request(self, request) -> bool:
        return request.method in permissions.SAFE_METHODS or roles.is_admin(request.user)


class ReadOnlyFieldsOnce:
    """For a read-only ModelSerializer shown on every answer of a busy endpoint: its fields are worked out
    from the model once per class (``ModelSerializer.get_fields`` introspects the model on every
    instance) and each instance gets a deep copy, as DRF copies declared fields.

    Answers are written through one set of fields per class, bound once: a read-only field keeps nothing
    of the object it shows, so the copies (a new field object per field per answer) are needed only where
    a field reads the serializer's context (a URL needs the request) or calls back into it (a method
    field); such a serializer gets its own bound fields, as in DRF.
    """

    _CONTEXT_FIELDS = (serializers.HyperlinkedRelatedField, serializers.HyperlinkedIdentityField,
                       serializers.SerializerMethodField, serializers.HiddenField, serializers.FileField)

    def get_fields(self):
        cls = type(self)
        template = cls.__dict__.get("_fields_once")
        if template is None:
            template = super().get_fields()
            cls._fields_once = template
        return copy.deepcopy(template)

    @property
    def _readable_fields(self):
        cls = type(self)
        shared = cls.__dict__.get("_readable_once")
        if shared is None:
            bound = [field for field in cls(context={}).fields.values() if not field.write_only]
            shareable = all(field.read_only and not isinstance(field, self._CONTEXT_FIELDS) for field in bound)
            shared = cls._readable_once = bound if shareable else False
        if shared is False:
            return [field for field in self.fields.values() if not field.write_only]
        return shared


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
        instance._history_user = self._actor()
        instance._change_reason = "created through the API"
        instance.save()
        for name, values in many.items():
            getattr(instance, name).set(values)
        return instance

    def update(self, instance, validated_data):
        instance._history_user = self._actor()
        instance._change_reason = "changed through the API"
        return super().update(instance, validated_data)


class DetailSerializer(serializers.Serializer):
    """The body of a refusal that is not about a field (403, 404, 409)."""

    detail = serializers.CharField()


# Every choice set the API exposes, documented once as an enum component named after its class
# (KeyStatusEnum, CampaignStatusEnum, ...): several models have a "status" with different states, and
# drf-spectacular's automatic naming by field name would collide.
NAMED_CHOICES: tuple[type[TextChoices], ...] = (
    key_choices.ContractStatus, key_choices.Environment, key_choices.WorkflowStatus, key_choices.RiskTier,
    key_choices.KeyStatus, key_choices.RevocationReason, key_choices.LifecycleAction,
    attestation_choices.CampaignStatus, attestation_choices.ItemStatus, attestation_choices.Decision,
    attestation_choices.DefaultAction, attestation_choices.Recommendation,
)
_CHOICES_BY_VALUES = {frozenset(set(c.values) - {""}): c for c in NAMED_CHOICES}


class NamedChoicesExtension(OpenApiSerializerFieldExtension):
    """Map a choice field whose choices are one of NAMED_CHOICES to a reference to that set's component."""

    target_class = "rest_framework.fields.ChoiceField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        values = [value for value in field.choices if value is not None]
        choices_class = None
        if not isinstance(field, serializers.MultipleChoiceField):
            choices_class = _CHOICES_BY_VALUES.get(frozenset(set(values) - {""}))
        if choices_class is None:
            return auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        name = f"{choices_class.__name__}Enum"
        enum = [value for value in choices_class.values if value != ""]
        components = [self._component(auto_schema, name, {
            "type": "string", "enum": enum,
            "description": build_choice_description_list([(v, choices_class(v).label) for v in enum]),
        })]
        if "" in values or field.allow_blank:
            components.append(self._component(auto_schema, "BlankEnum", {"enum": [""]}))
        if field.allow_null:
            components.append(self._component(auto_schema, "NullEnum", {"enum": [None]}))
        refs = [component.ref for component in components]
        return refs[0] if len(refs) == 1 else {"oneOf": refs}

    @staticmethod
    def _component(auto_schema, name: str, schema: dict) -> ResolvedComponent:
        # object=name, as drf-spectacular's own enum hook does, so the two never look like a collision.
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name)
        auto_schema.registry.register_on_missing(component)
        return component
