"""Successors for departed owners' keys: the manager's page (attestations.services.successions)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from attestations.choices import TransferStatus
from attestations.filters import SuccessionFilterSet
from attestations.models import OwnershipTransfer
from attestations.services import successions
from attestations.tables import SuccessionTable
from core.errors import ServiceError
from core.lists import ObjectListView
from keys.models import ApiKey


class SuccessorForm(forms.Form):
    successor = forms.CharField(max_length=150, label="Successor (username)")
    reason = forms.CharField(max_length=2000, required=False, label="Note to the successor")


class SuccessionListView(ObjectListView):
    """The keys of departed owners that the user may name a successor for (attestations.services.successions)."""

    table_class = SuccessionTable
    filterset_class = SuccessionFilterSet
    template_name = "attestations/succession_list.html"
    ordering = ("owner__username", "label", "pk")
    per_page = 50

    def visible_to(self, user):
        return successions.keys_awaiting_successor(user).prefetch_related(
            Prefetch("transfers", OwnershipTransfer.objects.filter(status=TransferStatus.PENDING)
                     .select_related("to_user"), to_attr="pending_transfers")
        )


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
