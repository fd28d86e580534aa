"""The portal's one list page: the rows a user may see, filtered, as a table, a page at a time.

A list view is a declaration (NetBox's ``ObjectListView``)::

    class ExposureListView(ObjectListView):
        queryset = Exposure.objects.select_related("key__workflow__customer", "reported_by")
        table_class = ExposureTable
        filterset_class = ExposureFilterSet
        template_name = "keys/exposure_list.html"
        allowed_roles = STAFF

Handled here once: sign-in and page roles, the user's visibility, ordering, pagination, the filter
bar (its number filters bounded to the 64-bit range), htmx's in-place refresh of the table and the
``Vary: HX-Request`` that goes with it.
"""

from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.core.exceptions import ImproperlyConfigured
from django.utils.cache import patch_vary_headers
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from core import roles
from core.numbers import bound_number_filters

# The roles a page may be limited to (all read every row), and how each is recognised: an auditor only while the
# request has found their current grant.
ROLE_CHECKS = {roles.ADMIN: roles.is_admin, roles.COMPLIANCE: roles.is_compliance, roles.AUDITOR: roles.reads_as_auditor}
STAFF = (roles.ADMIN, roles.COMPLIANCE)
# Pages of evidence and history that auditors read too (and act on nothing there).
READERS = (*STAFF, roles.AUDITOR)


class ObjectListView(LoginRequiredMixin, UserPassesTestMixin, SingleTableMixin, FilterView):
    """A list page. Declare ``queryset`` (the rows with the joins the table shows), ``table_class``,
    ``filterset_class`` and ``template_name`` (a page extending ``portal/object_list.html``), and as needed:

    - ``allowed_roles``: the roles that may open the page at all (others get 403); empty: anyone signed in.
    - ``visible_to(user)``: the rows ``user`` may see; by default ``queryset.visible_to(user)``, or every row
      on a page limited to admins and compliance.
    - ``ordering``, ``per_page``, ``paginator_class`` (``django_tables2.LazyPaginator`` spares the count).
    - ``table_id``: the id of the element holding the table; with ``refresh_in_place`` the filter bar
      refreshes that element through htmx, and htmx requests aimed at it get the table alone.

    Anonymous users are sent to sign in before anything is read.
    """

    queryset = None
    allowed_roles: tuple[str, ...] = ()
    per_page = 25
    table_id = "object-table"
    refresh_in_place = False
    partial_template_name = "portal/_table.html"
    permission_denied_message = "You may not see this list."

    def test_func(self) -> bool:
        if not self.allowed_roles:
            return True
        return any(ROLE_CHECKS[role](self.request.user) for role in self.allowed_roles)

    def visible_to(self, user):
        """The rows ``user`` may see, before filters and ordering: the queryset's own ``visible_to(user)``;
        on a page only admins and compliance open, every row (they read everything)."""
        if hasattr(self.queryset, "visible_to"):
            return self.queryset.visible_to(user)
        if self.allowed_roles:
            return self.queryset.all()
        raise ImproperlyConfigured(f"{type(self).__name__} must say which rows a user sees: define visible_to().")

    def get_queryset(self):
        queryset = self.visible_to(self.request.user)
        ordering = self.get_ordering()
        if ordering:
            queryset = queryset.order_by(*([ordering] if isinstance(ordering, str) else ordering))
        return queryset

    def get_filterset(self, filterset_class):
        filterset = super().get_filterset(filterset_class)
        bound_number_filters(filterset)
        return filterset

    def get_table_pagination(self, table):
        return {"per_page": self.per_page, "paginator_class": self.paginator_class}

    def is_partial(self) -> bool:
        """An htmx refresh of the table: no target named, or the table's element named."""
        htmx = self.request.htmx
        return bool(self.refresh_in_place and htmx and htmx.target in (None, self.table_id))

    def get_template_names(self):
        if self.is_partial():
            return [self.partial_template_name]
        return super().get_template_names()

    def get_list_url(self) -> str:
        """Where the filter bar sends its query: this page."""
        return self.request.path

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update({
            "list_url": self.get_list_url(),
            "table_id": self.table_id,
            "filter_hx_target": f"#{self.table_id}" if self.refresh_in_place else "",
        })
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        patch_vary_headers(response, ["HX-Request"])
        return response
