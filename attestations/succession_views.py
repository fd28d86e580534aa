"""Successors for departed owners' keys: the manager's page (attestations.successions)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from keys.models import ApiKey
from portal.errors import ServiceError

from . import successions
from .choices import TransferStatus
from .models import OwnershipTransfer


class SuccessorForm(forms.Form):
    successor = forms.CharField(max_length=150, label="Successor (username)")
    reason = forms.CharField(max_length=2000, required=False, label="Note to the successor")


class SuccessionFilterForm(forms.Form):
    owner = forms.CharField(required=False, max_length=150, label="Departed owner")


@login_required
def succession_list(request):
    filter_form = SuccessionFilterForm(request.GET or None)
    keys = successions.keys_awaiting_successor(request.user).prefetch_related(
        Prefetch("transfers", OwnershipTransfer.objects.filter(status=TransferStatus.PENDING).select_related("to_user"),
                 to_attr="pending_transfers")
    ).order_by("owner__username", "label", "pk")
    if filter_form.is_valid() and filter_form.cleaned_data["owner"]:
        keys = keys.filter(owner__username__icontains=filter_form.cleaned_data["owner"])
    page = Paginator(keys, 50).get_page(request.GET.get("page"))
    return render(request, "attestations/succession_list.html", {
        "page": page, "filter_form": filter_form, "form": SuccessorForm(),
    })


@login_required
@require_POST
def name_successor(request, pk):
    key = successions.keys_awaiting_successor(request.user).filter(pk=pk).first()
    if key is None:
        get_object_or_404(ApiKey.objects.visible_to(request.user), pk=pk)
        raise PermissionDenied("Only the departed owner's manager, compliance or an admin names a successor, "
                               "for a key whose owner has left.")
    form = SuccessorForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for message in errors:
                messages.error(request, f"{form.fields[field].label}: {message}" if field in form.fields else message)
        return redirect("attestations:successions")
    try:
        transfer = successions.name_successor(key, actor=request.user, successor=form.cleaned_data["successor"],
                                              reason=form.cleaned_data["reason"])
    except ServiceError as error:
        for message in error.messages:
            messages.error(request, f"{key.label}: {message}")
    else:
        messages.success(request, f"{transfer.to_user.get_username()} is asked to own {key.label}; they have until "
                                  f"{transfer.deadline:%d %b %Y} to accept.")
    return redirect("attestations:successions")
