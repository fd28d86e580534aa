"""The portal's one list page: the rows a user may see, filtered, as a table, a page at a time.

A list view is a declaration (NetBox's ``ObjectListView``)::

    class ExposureListView(ObjectListView):
        queryset = Exposure.objects.select_related("key__workflow__customer", "reported_by")
        table_class = ExposureTable
        filterset_class = ExposureFilterSet
        template_name = "keys/exposure_list.html"
        allowed_roles = STAFF

Handled here once: sign-in and page roles, the user's visibility, ordering, pagination by keyset (First,
Previous, Next through an opaque cursor, so a deep page costs what the first does; the count stops at
``count_cap``), the filter bar (its number filters bounded to the 64-bit range), htmx's in-place refresh of
the table and the ``Vary: HX-Request`` that goes with it.
"""

from dataclasses import dataclass

from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.core.exceptions import ImproperlyConfigured
from django.utils.cache import patch_vary_headers
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.rows import BoundRows

from core import keyset, roles
from core.numbers import bound_number_filters

# The roles a page may be limited to (all read every row), and how each is recognised: an auditor only while the
# request has found their current grant.
ROLE_CHECKS = {roles.ADMIN: roles.is_admin, roles.COMPLIANCE: roles.is_compliance, roles.AUDITOR: roles.reads_as_auditor}
STAFF = (roles.ADMIN, roles.COMPLIANCE)
# Pages of evidence and history that auditors read too (and act on nothing there).
READERS = (*STAFF, roles.AUDITOR)


CURSOR_PARAM = "cursor"
# Rows a page may be asked to show (``?per_page=``).
MAX_PER_PAGE = 100


@dataclass
class ListPage:
    """The page of a list the table shows, and the ways to the pages beside it."""

    object_list: BoundRows
    count: int  # rows of the whole list, at most the view's count_cap ...
    more: bool  # ... and whether there are more than that
    first_url: str | None
    previous_url: str | None
    next_url: str | None

    @property
    def has_previous(self) -> bool:
        return self.previous_url is not None

    @property
    def has_next(self) -> bool:
        return self.next_url is not None

    @property
    def is_first(self) -> bool:
        return self.first_url is None


class ObjectListView(LoginRequiredMixin, UserPassesTestMixin, SingleTableMixin, FilterView):
    """A list page. Declare ``queryset`` (the rows with the joins the table shows), ``table_class``,
    ``filterset_class`` and ``template_name`` (a page extending ``portal/object_list.html``), and as needed:

    - ``allowed_roles``: the roles that may open the page at all (others get 403); empty: anyone signed in.
    - ``visible_to(user)``: the rows ``user`` may see; by default ``queryset.visible_to(user)``, or every row
      on a page limited to admins and compliance.
    - ``ordering`` (the table's sort, when one is chosen, replaces it; the primary key breaks ties),
      ``per_page``, ``count_cap`` (a longer list says "more than" that many rather than counting them all).
    - ``table_id``: the id of the element holding the table; with ``refresh_in_place`` the filter bar
      refreshes that element through htmx, and htmx requests aimed at it get the table alone.

    Anonymous users are sent to sign in before anything is read.
    """

    queryset = None
    allowed_roles: tuple[str, ...] = ()
    per_page = 25
    count_cap = 10_000
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
        return False  # paged by keyset in get_table, after the table has applied the chosen sort

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        table.page = self.keyset_page(table.data.data, table)
        return table

    def get_per_page(self) -> int:
        try:
            return min(max(int(self.request.GET.get("per_page", self.per_page)), 1), MAX_PER_PAGE)
        except ValueError:
            return self.per_page

    def keyset_page(self, rows, table) -> ListPage:
        """The page of ``rows`` (filtered and in the table's order) that the request's cursor names; a cursor
        this list did not give out (another sort, a stale link) shows the first page."""
        cursor = self.request.GET.get(CURSOR_PARAM) or None
        try:
            page = keyset.paginate(rows, self.get_per_page(), cursor)
        except keyset.InvalidCursor:
            cursor, page = None, keyset.paginate(rows, self.get_per_page())
        if cursor is None and not page.has_next:
            count, more = len(page.rows), False
        else:
            count, more = keyset.capped_count(rows, self.count_cap)
        return ListPage(
            object_list=BoundRows(page.rows, table=table), count=count, more=more,
            first_url=self.page_url(None) if cursor else None,
            previous_url=self.page_url(page.previous_cursor) if page.has_previous else None,
            next_url=self.page_url(page.next_cursor) if page.has_next else None,
        )

    def page_url(self, cursor: str | None) -> str:
        query = self.request.GET.copy()
        for name in ("page", CURSOR_PARAM):
            query.pop(name, None)
        if cursor:
            query[CURSOR_PARAM] = cursor
        encoded = query.urlencode()
        return self.get_list_url() + (f"?{encoded}" if encoded else "")

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
