"""django-scim2's Users and Groups views, with each change in one sealed transaction and ids looked up among the
resources SCIM may reach.

A request that changes something runs in one ``sealed_atomic`` block: a refused operation anywhere in it (an
exception, which django-scim2 then answers as a SCIM error) rolls back everything it did, and what it did write
is sealed into the history chain when it commits. An id that is not one of ours (not a number, a service account,
a customer contact) is 404, never a server error.
"""

from django_scim import exceptions, views

from core.chain import sealed_atomic
from identity.scim.adapters import MAX_RESULTS


class ScimResourceMixin:
    def load_body(self, body):
        """The request's JSON object; anything else (no JSON, a list, a PATCH without Operations) is invalidSyntax."""
        try:
            document = super().load_body(body)
        except exceptions.BadRequestError as error:
            raise exceptions.BadRequestError(error.detail, scim_type="invalidSyntax")
        if not isinstance(document, dict):
            raise exceptions.BadRequestError("The body must be a JSON object.", scim_type="invalidSyntax")
        if not document and self.request.method in ("POST", "PUT"):
            raise exceptions.BadRequestError("The body is empty.", scim_type="invalidSyntax")
        if self.request.method == "PATCH" and not document.get("Operations"):
            raise exceptions.BadRequestError("A PATCH needs a non-empty Operations list.", scim_type="invalidSyntax")
        return document

    def get_object(self):
        reference = self.kwargs.get(self.lookup_url_kwarg)
        found = self.scim_adapter.find(reference)
        if found is None:
            raise exceptions.NotFoundError(reference)
        return found

    def get(self, request, *args, **kwargs):
        count = request.GET.get("count", "")
        if count.isdigit() and int(count) > MAX_RESULTS:
            # The ServiceProviderConfig's maxResults: a larger page is answered with this many (RFC 7644 3.4.2.4).
            request.GET = request.GET.copy()
            request.GET["count"] = str(MAX_RESULTS)
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        with sealed_atomic():
            return super().post(request, *args, **kwargs)

    def put(self, request, *args, **kwargs):
        with sealed_atomic():
            return super().put(request, *args, **kwargs)

    def patch(self, request, *args, **kwargs):
        with sealed_atomic():
            return super().patch(request, *args, **kwargs)

    def delete(self, request, *args, **kwargs):
        with sealed_atomic():
            return super().delete(request, *args, **kwargs)


class UsersView(ScimResourceMixin, views.UsersView):
    pass


class GroupsView(ScimResourceMixin, views.GroupsView):
    pass
