"""Portal pages for evidence exports: list, request, detail with live progress, download, and the
certificate that signs them (its SHA-256 fingerprint on the list and detail pages, the PEM to download).

Who sees which export is ``exports.exports_visible_to``: an export the user may not see is a 404.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from attestations.filters import EvidenceExportFilterSet
from attestations.forms.exports import ExportRequestForm
from attestations.models import EvidenceExport
from attestations.services import evidence_signing, exports
from attestations.tables import EvidenceExportTable
from core import audit, roles
from core.lists import ObjectListView
from core.models import AccessAction

EXPORTS_PER_PAGE = 50


class ExportListView(ObjectListView):
    table_class = EvidenceExportTable
    filterset_class = EvidenceExportFilterSet
    template_name = "attestations/export_list.html"
    ordering = ("-requested_at", "-pk")
    per_page = EXPORTS_PER_PAGE

    def visible_to(self, user):
        return exports.exports_visible_to(user)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"can_request_reports": roles.sees_everything(self.request.user),
                                                      **signing_context()}


def signing_context() -> dict:
    """The certificate exports are signed with, or why it cannot be shown (the page still renders)."""
    try:
        return {"signing_certificate": evidence_signing.signing_certificate()}
    except evidence_signing.SigningError as error:
        return {"signing_error": str(error)}


@login_required
@require_http_methods(["GET", "POST"])
def export_create(request):
    if roles.is_auditor(request.user):
        raise PermissionDenied("Auditors read the exports compliance requests; generating one is not theirs to do.")
    data = request.POST if request.method == "POST" else (request.GET or None)
    if data and data.get("kind") in ("campaign", "customer") and not roles.sees_everything(request.user):
        raise PermissionDenied("Only compliance and admins export campaign and customer reports.")
    form = ExportRequestForm(data, user=request.user)
    if request.method == "POST":
        export = form.call_service(lambda data: exports.request_export(actor=request.user, **form.service_kwargs()))
        if form.is_valid():
            messages.success(request, f"Export #{export.pk} is queued; this page shows its progress.")
            return redirect("attestations:export", pk=export.pk)
        return render(request, "attestations/export_form.html", {"form": form}, status=400)
    if data is None:
        form = ExportRequestForm(user=request.user)
    else:
        form = ExportRequestForm(initial=data.dict(), user=request.user)
    return render(request, "attestations/export_form.html", {"form": form})


def _visible_export(request, pk) -> EvidenceExport:
    return get_object_or_404(exports.exports_visible_to(request.user), pk=pk)


@login_required
def export_detail(request, pk):
    export = _visible_export(request, pk)
    return render(request, "attestations/export_detail.html",
                  {"export": export, "sampling": exports.sampling_shown(export), **signing_context()})


@login_required
def export_certificate(request):
    """The signing certificate (PEM), for auditors to check reports offline; public data, but only for
    those who see the evidence pages."""
    try:
        certificate = evidence_signing.signing_certificate()
    except evidence_signing.SigningError as error:
        raise Http404(str(error))
    response = HttpResponse(certificate.pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="evidence-signing.pem"'
    response["X-Certificate-SHA256"] = certificate.fingerprint
    return response


@login_required
def export_progress(request, pk):
    """The progress panel alone; htmx polls it every 2 seconds until the export is done or failed."""
    export = _visible_export(request, pk)
    response = render(request, "attestations/export_progress.html", {"export": export})
    patch_vary_headers(response, ["HX-Request"])
    response["Cache-Control"] = "no-store"
    return response


@login_required
def export_download(request, pk):
    export = _visible_export(request, pk)
    if export.file_purged_at:
        raise Http404("The export's file was deleted at the end of its retention period.")
    if export.status != EvidenceExport.Status.DONE or not export.file:
        raise Http404("The export is not ready.")
    response = FileResponse(export.file.open("rb"), as_attachment=True, filename=download_name(export),
                            content_type="application/pdf")
    response["Cache-Control"] = "private, no-store"
    response["X-Export-SHA256"] = export.sha256
    record_download(request, export)
    return response


def download_name(export: EvidenceExport) -> str:
    return f"evidence-{export.pk}-{export.kind}.pdf"


def record_download(request, export: EvidenceExport) -> None:
    """The access audit keeps who downloaded which evidence file (by its digest), when and from where."""
    audit.record_access(request, AccessAction.EXPORT_DOWNLOADED,
                        f"export #{export.pk} ({export.get_kind_display()}) sha256:{export.sha256}")
