"""SCIM filters (``GET /Users?filter=userName eq "x"``) as Django querysets of the people and groups SCIM sees.

scim2-filter-parser reads the filter and turns it into a ``Q`` over the mapped attributes; an attribute the
map does not know is refused (``invalidFilter``) instead of silently widening the answer, as the parser would.
Okta looks people up by ``userName``, Entra ID by ``userName`` or ``externalId``; groups by ``displayName``.
"""

from __future__ import annotations

from django_scim import exceptions
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from scim2_filter_parser.transpilers.django_q_object import Transpiler

from identity.models import ScimGroup
from identity.services import provisioning


class StrictTranspiler(Transpiler):
    def visit_AttrPath(self, node):
        found = super().visit_AttrPath(node)
        if found is None:
            name = node.attr_name + (f".{node.sub_attr.value}" if node.sub_attr else "")
            raise ValueError(f"cannot filter on {name!r}")
        return found


def filter_q(query: str, attr_map: dict):
    try:
        tree = SCIMParser().parse(SCIMLexer().tokenize(query))
        q = StrictTranspiler(attr_map).transpile(tree)
    except (SCIMParserError, ValueError, TypeError, AttributeError) as error:
        raise exceptions.BadRequestError(f"Invalid filter {query!r}: {error}", scim_type="invalidFilter")
    if q is None:
        raise exceptions.BadRequestError(f"Invalid filter {query!r}", scim_type="invalidFilter")
    return q


class PeopleFilter:
    """django-scim2's USER_FILTER_PARSER: ``search`` answers a filter with the matching people."""

    attr_map = {
        ("userName", None, None): "username",
        ("externalId", None, None): "owner_profile.external_id",
        ("emails", None, None): "email",
        ("emails", "value", None): "email",
        ("name", "givenName", None): "first_name",
        ("name", "familyName", None): "last_name",
        ("active", None, None): "is_active",
    }

    @classmethod
    def search(cls, filter_query, request=None):
        return provisioning.with_details(provisioning.people().filter(filter_q(filter_query, cls.attr_map)))


class GroupFilter:
    """django-scim2's GROUP_FILTER_PARSER."""

    attr_map = {
        ("displayName", None, None): "display_name",
        ("externalId", None, None): "external_id",
        ("members", "value", None): "members.id",
    }

    @classmethod
    def search(cls, filter_query, request=None):
        return (ScimGroup.objects.filter(filter_q(filter_query, cls.attr_map)).distinct()
                .prefetch_related("members").order_by("pk"))


def queryset_post_processor(model):
    """django-scim2's GET_QUERYSET_POST_PROCESSOR_GETTER: an unfiltered list holds only the people SCIM sees."""

    def post_process(request, queryset, *args, **kwargs):
        if model is ScimGroup:
            return queryset.prefetch_related("members")
        return provisioning.with_details(queryset.filter(pk__in=provisioning.people().values("pk")))

    return post_process
