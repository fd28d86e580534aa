"""Evidence exports over REST: request one (202), follow its progress, download the PDF.

Who sees which export is ``exports.exports_visible_to`` (a hidden export is a 404); who may request
which is ``exports.request_export``. Kinds and states are plain strings here (documented in the
help text) so their enums do not collide with other ``kind``/``status`` fields in the schema.
"""

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse

from attestations.models import Campaign, EvidenceExport
from attestations.services import evidence, exports
from attestations.services.exports import SAMPLE_SIZE_MESSAGE
from attestations.views.exports import download_name, record_download
from core import roles
from core.api import DetailSerializer
from keys.models import ApiKey, Customer

Kind = EvidenceExport.Kind


class PDFRenderer(BaseRenderer):
    """Lets a client ask for ``Accept: application/pdf`` on the download; refusals still come back as JSON text."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else JSONRenderer().render(data)


class EvidenceExportSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="campaign, key or customer.")
    status = serializers.CharField(read_only=True, help_text="queued, rendering, done or failed.")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = EvidenceExport
        fields = [
            "id", "kind", "campaign", "key", "customer", "period_start", "period_end", "parameters", "status",
            "progress", "progress_note", "chunks_total", "chunks_done", "requested_by", "requested_at", "finished_at",
            "sha256", "size", "page_count", "signed", "chain_ok", "chain_seq", "chain_head", "error", "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, export) -> str | None:
        if export.status != EvidenceExport.Status.DONE:
            return None
        return reverse("export-download", args=[export.pk], request=self.context.get("request"))


class ExportRequestSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="campaign, key or customer; name the subject in the field of that name.")
    campaign = serializers.PrimaryKeyRelatedField(queryset=Campaign.objects.all(), required=False, allow_null=True)
    key = serializers.PrimaryKeyRelatedField(queryset=ApiKey.objects.all(), required=False, allow_null=True)
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), required=False, allow_null=True)
    period_start = serializers.DateField(required=False, allow_null=True, help_text="Customer report only.")
    period_end = serializers.DateField(required=False, allow_null=True, help_text="Customer report only.")
    sample_size = serializers.IntegerField(
        required=False, allow_null=True, min_value=evidence.SAMPLE_SIZE_MIN, max_value=evidence.SAMPLE_SIZE_MAX,
        error_messages={"invalid": SAMPLE_SIZE_MESSAGE, "min_value": SAMPLE_SIZE_MESSAGE,
                        "max_value": SAMPLE_SIZE_MESSAGE, "max_string_length": SAMPLE_SIZE_MESSAGE},
        help_text="Campaign report only: how many confirmed decisions to print, drawn at random with a seed the "
                  "report prints (and `parameters.sample_seed` holds). Omitted: 25, 40 or 60 by the number of "
                  "confirmed decisions, all of them when fewer.")
    print_all_items = serializers.BooleanField(
        required=False, default=False,
        help_text="Campaign report only: print every item instead of the exceptions, releases, reassignments, "
                  "revocations, late and default decisions and the sample. Every item is attached as CSV and JSON "
                  "either way.")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None and not roles.sees_everything(user):
            # An owner names only keys they own: any other id is "does not exist", never a hint that it does.
            self.fields["key"].queryset = ApiKey.objects.visible_to(user).filter(owner=user)

    def validate_kind(self, value):
        if value not in Kind.values:
            raise serializers.ValidationError(f"Choose one of: {', '.join(Kind.values)}.")
        return value


@extend_schema_view(
    create=extend_schema(request=ExportRequestSerializer, responses={
        202: EvidenceExportSerializer,
        400: OpenApiResponse(description="Refused: a message per field."),
        403: OpenApiResponse(DetailSerializer, description="The role does not allow this kind of export."),
    }),
)
class EvidenceExportViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Evidence exports the caller may see: compliance and admins all, an owner their keys' dossiers."""

    serializer_class = EvidenceExportSerializer
    filterset_class = None

    def get_queryset(self):
        return exports.exports_visible_to(self.request.user).order_by("-requested_at", "-pk")

    def create(self, request, *args, **kwargs):
        """Queue an export; it renders in the background. Poll the returned export until `status` is done."""
        kind = request.data.get("kind") if hasattr(request.data, "get") else None
        if kind in (Kind.CAMPAIGN, Kind.CUSTOMER) and not roles.sees_everything(request.user):
            raise PermissionDenied("Only compliance and admins export campaign and customer reports.")
        serializer = ExportRequestSerializer(data=request.data, user=request.user)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if v is not None}
        export = exports.request_export(actor=request.user, **data)
        export = self.get_queryset().get(pk=export.pk)
        return Response(self.get_serializer(export).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY,
                              404: OpenApiResponse(DetailSerializer, description="Unknown, hidden or not ready.")})
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, PDFRenderer])
    def download(self, request, pk=None):
        """The signed PDF (its SHA-256 is also in the `X-Export-SHA256` header)."""
        export = self.get_object()
        if export.status != EvidenceExport.Status.DONE or not export.file:
            raise Http404("The export is not ready.")
        response = FileResponse(export.file.open("rb"), as_attachment=True, filename=download_name(export),
                                content_type="application/pdf")
        response["X-Export-SHA256"] = export.sha256
        response["Cache-Control"] = "private, no-store"
        record_download(request, export)
        return response
