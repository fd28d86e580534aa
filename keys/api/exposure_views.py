"""``/api/v1/exposures/``: report a found secret (or its fingerprint); list reports (compliance, admins, integrations).

Admins, compliance, owners and stewards, and integration tokens report; customer contacts may not. Whoever
may not see the matched key gets the same answer as for no match at all.
"""

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from core.api import RolePermission
from keys.api.permissions import ReadsEverythingOrIntegration
from keys.api.views import TakesSecretOnCreate
from keys.choices import ExposureSource, TriageStatus
from keys.models import Exposure
from keys.services.exposures import key_shown_to, may_report, report_exposure
from keys.services.tokens import key_scope_q, request_token

NO_MATCH = "Report recorded. It matches none of the keys you can see."


def matched_message(key) -> str:
    return (f"Report recorded. It matches key {key.pk} ({key.label}), which is {key.get_status_display().lower()}; "
            "its owner and compliance have been told.")


class ReportExposureSerializer(serializers.Serializer):
    secret = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, max_length=512, style={"input_type": "password"},
        help_text="The secret found: fingerprinted at once under every known pepper and dropped; never stored, "
                  "logged or returned. Give this or `fingerprint`.",
    )
    fingerprint = serializers.CharField(required=False, max_length=64,
                                        help_text="Instead of the secret: its HMAC-SHA256 fingerprint.")
    location = serializers.CharField(max_length=500, help_text="Where the secret was found (URL, repository, ticket).")
    notes = serializers.CharField(required=False, allow_blank=True, max_length=5000)

    def is_valid(self, *, raise_exception=False):
        try:
            return super().is_valid(raise_exception=raise_exception)
        finally:
            # The browsable API re-renders a refused form from the submitted data: drop the secret from it.
            if hasattr(self, "initial_data") and hasattr(self.initial_data, "copy") and "secret" in self.initial_data:
                self.initial_data = self.initial_data.copy()
                self.initial_data.pop("secret")


class ExposureReceiptSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The exposure report's id.")
    matched = serializers.BooleanField(help_text="True only when the match is a key the caller may see.")
    key = serializers.IntegerField(allow_null=True, help_text="The matched key, when the caller may see it.")
    message = serializers.CharField()


class MayReportExposures(RolePermission):
    message = "Only admins, compliance, key owners and stewards, and integrations report exposures."

    def allows_request(self, request) -> bool:
        return may_report(request.user, request_token(request))


class ExposureSerializer(serializers.ModelSerializer):
    key_label = serializers.CharField(source="key.label", read_only=True, allow_null=True)
    key_prefix = serializers.CharField(source="key.prefix", read_only=True, allow_null=True)
    reported_by = serializers.CharField(source="reported_by.username", read_only=True, allow_null=True)
    matched = serializers.BooleanField(read_only=True)
    source = serializers.ChoiceField(choices=ExposureSource.choices, read_only=True)
    triage = serializers.ChoiceField(
        source="triage.status", choices=TriageStatus.choices, read_only=True, allow_null=True, default=None,
        help_text="A fingerprint-only report of a key its reporter may not see: `open` until compliance revokes "
                  "the key or dismisses the report; null when no triage was needed.",
    )

    class Meta:
        model = Exposure
        fields = ["id", "matched", "key", "key_label", "key_prefix", "location", "notes", "source", "reported_by",
                  "reported_at", "triage"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(description="Exposure reports: compliance and admins all; an integration those matched to "
                                   "keys of its scope."),
)
class ExposureViewSet(TakesSecretOnCreate, mixins.CreateModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = ExposureSerializer
    create_serializer_class = ReportExposureSerializer
    integration_token_actions = {"create", "list"}
    filterset_fields = ["key", "source"]

    def get_queryset(self):
        exposures = Exposure.objects.select_related("key", "reported_by", "triage").order_by("-reported_at", "-pk")
        token = request_token(self.request)
        if token is not None:
            return exposures.filter(key_scope_q(token, "key__"))
        return exposures

    def get_permissions(self):
        if self.action == "create":
            return [MayReportExposures()]
        return [ReadsEverythingOrIntegration()]

    @extend_schema(
        request=ReportExposureSerializer, responses={201: ExposureReceiptSerializer},
        examples=[
            OpenApiExample("Report a found secret", request_only=True,
                           value={"secret": "sk_live_…", "location": "https://paste.example/abc", "notes": ""}),
            OpenApiExample("No match (or a key you may not see)", response_only=True, status_codes=["201"],
                           value={"id": 7, "matched": False, "key": None, "message": NO_MATCH}),
        ],
        description="Report a found secret (fingerprinted at once, never kept) or its fingerprint (admins, "
                    "compliance, key owners and stewards, integrations; never a customer contact). The secret "
                    "revokes the matched key as an emergency; a fingerprint alone revokes only a key the caller "
                    "may see, and otherwise opens a triage for compliance. The key's owner and compliance are "
                    "told of every match. The answer names the key only to a caller who may see it; anyone else "
                    "gets the same answer as for no match.",
    )
    @method_decorator(sensitive_variables())
    def create(self, request, *args, **kwargs):
        serializer = ReportExposureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = request_token(request)
        exposure = report_exposure(
            reporter=request.user,
            token=token,
            source=ExposureSource.API,
            secret=serializer.validated_data.get("secret"),
            fingerprint=serializer.validated_data.get("fingerprint"),
            location=serializer.validated_data["location"],
            notes=serializer.validated_data.get("notes", ""),
        )
        key = key_shown_to(exposure, request.user, token)
        if key is not None:
            body = {"id": exposure.pk, "matched": True, "key": key.pk, "message": matched_message(key)}
        else:
            body = {"id": exposure.pk, "matched": False, "key": None, "message": NO_MATCH}
        return Response(body, status=status.HTTP_201_CREATED)
