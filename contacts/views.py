"""Compliance's contact pages (invite, assign keys, send links) and the contact's own pages (link, code,
their items, decide, sign out). Views never change state themselves: contacts.access does."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Func, IntegerField, OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from attestations.choices import ItemStatus
from attestations.forms.decisions import DECISION_ACTIONS, DecisionForm, decision_form, decision_panels
from attestations.models import AttestationItem
from contacts import access
from contacts.access import ContactError, LinkRefused
from contacts.filters import CustomerContactFilterSet
from contacts.forms import AssignKeyForm, CodeForm, ContactItemFilterForm, DeactivateForm, EraseForm, InviteForm
from contacts.middleware import CONTACT_SESSION_KEY, is_contact_session
from contacts.models import AccessLink, CustomerContact
from contacts.tables import CustomerContactTable
from core import roles
from core.audit import record_access
from core.errors import ServiceError
from core.lists import STAFF, ObjectListView
from core.models import AccessAction
from keys.models import ApiKey

PER_PAGE = 50
ITEMS_PER_PAGE = 25
PENDING_LINK_KEY = "customer_contact_link_id"
ITEM_RELATED = ("campaign", "key__workflow__customer", "exception")


def _require_compliance(request):
    if is_contact_session(request) or not roles.sees_everything(request.user):
        raise PermissionDenied("Customer contacts are managed by compliance and admins.")


def count_of(rows) -> Subquery:
    """How many ``rows`` there are (a correlated subquery), as a number column."""
    return Subquery(rows.order_by().annotate(n=Func("pk", function="COUNT")).values("n"),
                    output_field=IntegerField())


class ContactListView(ObjectListView):
    # Counted per contact in subqueries, which the database computes for the page's rows only (after the sort
    # and limit), rather than joining every key and item of every contact and grouping before the first row.
    queryset = CustomerContact.objects.select_related("customer", "invited_by").annotate(
        key_count=count_of(ApiKey.objects.filter(owner=OuterRef("user"))),
        pending_count=count_of(AttestationItem.objects.filter(reviewer=OuterRef("user"), status=ItemStatus.PENDING)),
    )
    table_class = CustomerContactTable
    filterset_class = CustomerContactFilterSet
    template_name = "contacts/contact_list.html"
    ordering = ("customer__name", "name", "pk")
    per_page = PER_PAGE
    allowed_roles = STAFF
    permission_denied_message = "Customer contacts are managed by compliance and admins."

    def test_func(self) -> bool:
        return not is_contact_session(self.request) and super().test_func()


@login_required
def invite(request):
    _require_compliance(request)
    form = InviteForm(request.POST if request.method == "POST" else None, initial={"customer": request.GET.get("customer")})
    if request.method == "POST":
        invited = form.call_service(lambda data: access.invite_contact(actor=request.user, **data))
        if form.is_valid():
            contact, _token = invited
            record_access(request, AccessAction.CONTACT_INVITED, f"contact #{contact.pk} ({contact.customer})")
            messages.success(request, f"{contact.name} is invited: a sign-in link was emailed to {contact.email}.")
            return redirect("contacts:detail", contact.pk)
    return render(request, "contacts/invite.html", {"form": form}, status=400 if form.errors else 200)


def _contact_for_staff(request, pk) -> CustomerContact:
    _require_compliance(request)
    return get_object_or_404(CustomerContact.objects.visible_to(request.user).select_related("customer", "user"), pk=pk)


def _render_detail(request, contact, *, assign_form=None, deactivate_form=None, erase_form=None, status=200):
    keys = access.contact_keys(contact).select_related("workflow").order_by("label")
    items = access.contact_items(contact).select_related("campaign", "key").order_by("-campaign__launched_at", "pk")[:50]
    return render(request, "contacts/contact_detail.html", {
        "contact": contact,
        "keys": keys,
        "items": items,
        "links": contact.links.select_related("created_by")[:20],
        "may_assign": roles.is_admin(request.user),
        "assign_form": assign_form or AssignKeyForm(contact=contact),
        "deactivate_form": deactivate_form or DeactivateForm(),
        "may_erase": access.may_erase(request.user, contact),
        "erase_form": erase_form or EraseForm(prefix="erase"),
        "history": contact.history.select_related("history_user").order_by("-history_date", "-history_id")[:20],
    }, status=status)


@login_required
def contact_detail(request, pk):
    return _render_detail(request, _contact_for_staff(request, pk))


@login_required
@require_POST
def send_link(request, pk):
    contact = _contact_for_staff(request, pk)
    try:
        access.send_access_link(contact, actor=request.user)
    except ContactError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        record_access(request, AccessAction.CONTACT_LINK_SENT, f"contact #{contact.pk}")
        messages.success(request, f"A new sign-in link was emailed to {contact.email}; earlier links no longer work.")
    return redirect("contacts:detail", contact.pk)


@login_required
@require_POST
def assign(request, pk):
    contact = _contact_for_staff(request, pk)
    if not roles.is_admin(request.user):
        raise PermissionDenied("Admins assign keys.")
    form = AssignKeyForm(request.POST, contact=contact)
    form.call_service(lambda data: access.assign_key(contact, data["key"], actor=request.user))
    if form.is_valid():
        key = form.cleaned_data["key"]
        messages.success(request, f"{contact.name} now owns {key.label}. Rotate the key: ownership changed.")
        return redirect("contacts:detail", contact.pk)
    return _render_detail(request, contact, assign_form=form, status=400)


@login_required
@require_POST
def deactivate(request, pk):
    contact = _contact_for_staff(request, pk)
    form = DeactivateForm(request.POST)
    form.call_service(lambda data: access.deactivate_contact(contact, actor=request.user, reason=data["reason"]))
    if form.is_valid():
        messages.success(request, f"{contact.name} no longer has access; their links stopped working.")
        return redirect("contacts:detail", contact.pk)
    return _render_detail(request, contact, deactivate_form=form, status=400)


@login_required
@require_POST
def erase(request, pk):
    contact = _contact_for_staff(request, pk)
    if not roles.is_admin(request.user):
        raise PermissionDenied("Admins erase a contact's personal data.")
    form = EraseForm(request.POST, prefix="erase")
    form.call_service(lambda data: access.erase_contact(contact, actor=request.user, reason=data["reason"]))
    if form.is_valid():
        messages.success(request, "The contact's personal data is erased; their records stay verifiable.")
        return redirect("contacts:detail", contact.pk)
    return _render_detail(request, contact, erase_form=form, status=400)


def _refused_link(request, error: LinkRefused, link: AccessLink | None = None):
    record_access(request, AccessAction.CONTACT_LINK_REFUSED, error.state,
                  user=link.contact.user if link is not None else None)
    request.session.pop(PENDING_LINK_KEY, None)
    return render(request, "contacts/link_refused.html", {"message": error.messages[0], "state": error.state},
                  status=404 if error.state == "unknown" else 410)


def link_access(request, token):
    """The emailed link: shows whom it is for and sends the one-time code on request (a mail scanner
    fetching the link sends nothing and uses nothing up)."""
    try:
        link = access.open_link(token)
    except LinkRefused as error:
        return _refused_link(request, error)
    if request.method == "POST":
        if request.user.is_authenticated:
            logout(request)  # another person's session never carries over into a contact's
        return _send_code(request, link)
    record_access(request, AccessAction.CONTACT_LINK_OPENED, f"link #{link.pk}", user=link.contact.user)
    return render(request, "contacts/link_access.html", {"link": link, "email": access.mask_email(link.contact.email)})


def _send_code(request, link: AccessLink, *, again: bool = False):
    """Email the link's one-time code (a new one replaces the last) and go to the page that asks for it;
    a link refused meanwhile gets its page instead."""
    try:
        access.send_code(link)
    except LinkRefused as error:
        return _refused_link(request, error, link)
    except ContactError as error:
        messages.error(request, error.messages[0])
    else:
        record_access(request, AccessAction.CONTACT_CODE_SENT, f"link #{link.pk}{' (again)' if again else ''}",
                      user=link.contact.user)
        if again:
            messages.success(request, "A new code is on its way; the previous one no longer works.")
    request.session[PENDING_LINK_KEY] = link.pk
    return redirect("contacts:code")


def _pending_link(request) -> AccessLink | None:
    pk = request.session.get(PENDING_LINK_KEY)
    return AccessLink.objects.select_related("contact__user", "contact__customer").filter(pk=pk).first() if pk else None


def code(request):
    link = _pending_link(request)
    if link is None:
        return render(request, "contacts/link_refused.html", {
            "message": "Open the link from your email first: it asks for the code.", "state": "no-link",
        }, status=400)
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            contact = access.verify_code(link, form.cleaned_data["code"])
        except LinkRefused as error:
            record_access(request, AccessAction.CONTACT_CODE_FAILED, f"link #{link.pk}: {error.state}",
                          user=link.contact.user)
            return _refused_link(request, error, link)
        except ContactError as error:
            record_access(request, AccessAction.CONTACT_CODE_FAILED, f"link #{link.pk}", user=link.contact.user)
            form.add_service_errors(error)
        else:
            request.session.pop(PENDING_LINK_KEY, None)
            login(request, contact.user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[CONTACT_SESSION_KEY] = contact.pk
            request.session.set_expiry(settings.CONTACT_SESSION_SECONDS)
            record_access(request, AccessAction.CONTACT_SIGNED_IN, f"link #{link.pk}", user=contact.user)
            return redirect("contacts:home")
    return render(request, "contacts/code.html", {
        "form": form, "email": access.mask_email(link.contact.email), "minutes": settings.CONTACT_CODE_MINUTES,
    }, status=400 if form.errors else 200)


@require_POST
def code_resend(request):
    link = _pending_link(request)
    if link is None:
        return redirect("contacts:code")
    return _send_code(request, link, again=True)


def _signed_in_contact(request) -> CustomerContact | None:
    if not is_contact_session(request):
        return None
    contact = CustomerContact.objects.select_related("customer", "user").filter(
        pk=request.session[CONTACT_SESSION_KEY], user=request.user, is_active=True
    ).first()
    return contact


def _contact_page(view):
    """The contact's pages: only a contact session; anyone else is told where they are."""

    def wrapped(request, *args, **kwargs):
        contact = _signed_in_contact(request)
        if contact is None:
            if is_contact_session(request):  # deactivated since sign-in
                logout(request)
            if not request.user.is_authenticated:
                return render(request, "contacts/link_refused.html", {
                    "message": "Customer contacts reach this page through the link we email them.", "state": "signed-out",
                }, status=401)
            raise PermissionDenied("This page is for customer contacts.")
        return view(request, contact, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _item_row(item, user, failed: DecisionForm | None = None) -> dict:
    """One of the contact's items with the decisions a contact makes (confirm, release)."""
    pending = item.status == ItemStatus.PENDING
    return {
        "item": item, "pending": pending, "decide_url": reverse("contacts:decide", args=[item.pk]),
        "refused": failed.non_field_errors() if failed is not None else [],
        "panels": decision_panels(item, user, access.CONTACT_DECISIONS, failed) if pending else [],
    }


def _render_home(request, contact, *, failed_item=None, failed_form=None, status=200):
    filters = ContactItemFilterForm(request.GET or None)
    show = filters.cleaned_data["status"] if filters.is_valid() else ""
    items = access.contact_items(contact).select_related(*ITEM_RELATED)
    if show == "decided":
        items = items.exclude(status=ItemStatus.PENDING).order_by("-decided_at", "-pk")
    else:
        items = access.pending_items(contact).select_related(*ITEM_RELATED).order_by("campaign__due_on", "key__label", "pk")
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [_item_row(item, contact.user, failed_form if failed_item == item.pk else None) for item in page.object_list]
    keys = access.contact_keys(contact).select_related("workflow").order_by("label")
    # A refusal of an item not on this page (already decided, say) is shown above the list.
    refused = []
    if failed_form is not None and not any(row["item"].pk == failed_item for row in rows):
        refused = [message for messages_ in failed_form.errors.values() for message in messages_]
    return render(request, "contacts/home.html", {
        "contact": contact, "filters": filters, "page": page, "rows": rows, "keys": keys, "show": show,
        "refused": refused,
        "page_range": page.paginator.get_elided_page_range(page.number),
    }, status=status)


@_contact_page
def home(request, contact):
    """The contact's own page: their items waiting for a decision and the keys they own."""
    record_access(request, AccessAction.CONTACT_VISIT, request.get_full_path())
    return _render_home(request, contact)


@require_POST
@_contact_page
def decide(request, contact, pk):
    item = get_object_or_404(access.contact_items(contact).select_related(*ITEM_RELATED), pk=pk)
    form = decision_form(request.POST, item_id=item.pk)
    decision = form.decision
    if form.is_valid():
        kwargs = form.service_kwargs()
        try:
            access.decide(contact, item, **{k: v for k, v in kwargs.items() if k != "to"})
        except ServiceError as error:
            form.add_service_errors(error)
        else:
            record_access(request, AccessAction.CONTACT_DECISION, f"{decision} item #{item.pk} key {item.key.prefix}")
            done = DECISION_ACTIONS[decision].done.format(label=item.key.label, to="")
            messages.success(request, f"{done} Thank you.")
            return redirect("contacts:home")
    record_access(request, AccessAction.CONTACT_DECISION, f"{decision or '-'} item #{item.pk} refused")
    return _render_home(request, contact, failed_item=item.pk, failed_form=form, status=400)


@require_POST
def sign_out(request):
    logout(request)
    return render(request, "contacts/signed_out.html")

