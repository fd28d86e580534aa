"""The admins' pages of issued tokens (``core.models.IssuedToken``): the list with the form issuing one, whose
answer shows the new token once, and revoking one. Each kind declares its model, form, table and service."""

import django_tables2 as tables
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import mark_safe
from django.views import View

from core import roles
from core.errors import ServiceError
from core.lists import ObjectListView


class IssuedTokenListView(ObjectListView):
    """The tokens of one kind, active first, and the form issuing one. Declare ``form_class`` and ``issue(form)``
    (which calls the kind's service and returns the token and its plaintext)."""

    form_class = None
    ordering = (F("revoked_at").asc(nulls_first=True), "name", "pk")
    per_page = 50
    allowed_roles = (roles.ADMIN,)

    def issue(self, form):
        raise NotImplementedError

    def post(self, request, *args, **kwargs):
        form = self.form_class(request.POST)
        context, status = {"form": form}, 400
        if form.is_valid():
            try:
                token, plaintext = self.issue(form)
            except ServiceError as error:
                form.add_service_errors(error)
            else:
                # Shown in this one response, never again: there is nothing to show it from later.
                context, status = {"form": self.form_class(), "plaintext": plaintext, "created": token}, 201
        self.extra_context = context
        response = self.get(request, *args, **kwargs)
        response.status_code = status
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", self.form_class())
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        add_never_cache_headers(response)
        return response


class RevokeIssuedTokenView(LoginRequiredMixin, View):
    """Revoke one token (admins only; POST). Declare ``model``, ``revoke`` (the kind's service function, as a
    ``staticmethod``), ``success_url`` and the messages."""

    http_method_names = ["post"]
    model = None
    revoke = None
    success_url = ""
    permission_denied_message = "Only admins manage tokens."
    revoked_message = "Token {name} revoked: it is refused from now on."

    def post(self, request, pk):
        if not roles.is_admin(request.user):
            raise PermissionDenied(self.permission_denied_message)
        token = get_object_or_404(self.model, pk=pk)
        self.revoke(token, actor=request.user, reason=request.POST.get("reason", ""))
        messages.success(request, self.revoked_message.format(name=token.name))
        return redirect(self.success_url)


def revoke_column(url_name: str) -> tables.TemplateColumn:
    """An active token's Revoke button, posting to ``url_name``."""
    return tables.TemplateColumn(
        '{% if record.is_active %}<form method="post" action="{% url revoke_url record.pk %}" class="inline-form">'
        '{% csrf_token %}<button type="submit" class="button button-small">Revoke</button></form>{% endif %}',
        extra_context={"revoke_url": url_name},
        verbose_name=mark_safe('<span class="visually-hidden">Actions</span>'),
    )


class IssuedTokenTable(tables.Table):
    """The columns every kind of token shows; a kind adds its scope and ``actions = revoke_column(its URL)``."""

    name = tables.Column()
    token_prefix = tables.TemplateColumn('<code class="prefix">{{ record.token_prefix }}…</code>', verbose_name="Token")
    acts_as = tables.Column(verbose_name="Service account")
    created_at = tables.TemplateColumn(
        '{{ record.created_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.created_by.get_username }}</span>',
        verbose_name="Created",
    )
    last_used_at = tables.TemplateColumn(
        '{% if record.last_used_at %}{{ record.last_used_at|date:"SHORT_DATETIME_FORMAT" }}{% if record.last_used_from %}'
        '<br><span class="muted">from {{ record.last_used_from }}</span>{% endif %}{% else %}<span class="muted">never</span>'
        "{% endif %}",
        verbose_name="Last used",
    )
    status = tables.TemplateColumn(
        '{% if record.is_active %}<span class="badge">Active</span>{% else %}<span class="badge badge-flag">Revoked '
        '{{ record.revoked_at|date:"SHORT_DATE_FORMAT" }}</span>{% endif %}',
        verbose_name="Status",
    )

    class Meta:
        attrs = {"class": "data-table"}
        orderable = False

    def render_acts_as(self, record):
        return record.acts_as.get_username()
