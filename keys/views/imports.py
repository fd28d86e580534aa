"""The inventory import page: admins upload a CSV of existing keys, imported all or nothing."""

from io import BytesIO

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from core import roles
from keys.services.importer import COLUMNS, IDENTITY_COLUMNS, REQUIRED_COLUMNS, KeyImportError, import_keys

SAMPLE_PATH = "samples/keys-import-template.csv"


class InMemoryImportUploadHandler(FileUploadHandler):
    """Keep the upload in memory, never in a temporary file on disk: an inventory may hold secrets.

    At most ``IMPORT_MAX_BYTES + 1`` bytes are kept; the true size is reported so that the importer
    refuses an oversized file with its usual message.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer = BytesIO()
        self.limit = settings.IMPORT_MAX_BYTES + 1

    def receive_data_chunk(self, raw_data, start):
        room = self.limit - self.buffer.tell()
        if room > 0:
            self.buffer.write(raw_data[:room])
        return None

    def file_complete(self, file_size):
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
        help_text="UTF-8 CSV with a header row. Each row gives either the secret (fingerprinted and dropped) or its fingerprint.",
    )
    reason = forms.CharField(
        max_length=200,
        help_text="Recorded in every imported key's history, e.g. “Gateway inventory, ticket OPS-42”.",
    )


@sensitive_post_parameters()
@csrf_exempt
@login_required
def import_keys_view(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied
    # The upload handlers can only be replaced before the body is read, so the CSRF check (which
    # reads it) runs after, in the inner view.
    request.upload_handlers = [InMemoryImportUploadHandler(request)]
    return _import_page(request)


@csrf_protect
def _import_page(request):
    problems = []
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                result = import_keys(form.cleaned_data["file"], actor=request.user, reason=form.cleaned_data["reason"])
            except KeyImportError as exc:
                problems = exc.rows
            else:
                messages.success(request, f"Imported {result.count} keys.")
                return redirect("keys:list")
    else:
        form = ImportForm()
    return render(
        request,
        "keys/import.html",
        {
            "form": form,
            "problems": problems,
            "required_columns": [c for c in REQUIRED_COLUMNS if c != "prefix"],
            "identity_columns": IDENTITY_COLUMNS,
            "all_columns": COLUMNS,
            "max_bytes": settings.IMPORT_MAX_BYTES,
            "sample_path": SAMPLE_PATH,
        },
        # A refused file (bad rows, too large) or form is a 400, with the same page saying why.
        status=400 if problems or form.errors else 200,
    )
