"""SCIM 2.0 at /scim/v2/ (included from identity.urls): django-scim2's routes, with the Users and Groups views of
``identity.scim.views``. The namespace stays "scim", which django-scim2 reverses."""

from django.urls import re_path
from django_scim import views

from identity.scim.views import GroupsView, UsersView

app_name = "scim"

urlpatterns = [
    re_path(r"^$", views.SCIMView.as_view(implemented=False), name="root"),
    re_path(r"^\.search$", views.SearchView.as_view(implemented=False), name="search"),
    re_path(r"^Users/\.search$", views.UserSearchView.as_view(), name="users-search"),
    re_path(r"^Users(?:/(?P<uuid>[^/]+))?$", UsersView.as_view(), name="users"),
    re_path(r"^Groups/\.search$", views.GroupSearchView.as_view(), name="groups-search"),
    re_path(r"^Groups(?:/(?P<uuid>[^/]+))?$", GroupsView.as_view(), name="groups"),
    re_path(r"^Me$", views.SCIMView.as_view(implemented=False), name="me"),
    re_path(r"^ServiceProviderConfig$", views.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$", views.ResourceTypesView.as_view(), name="resource-types"),
    re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?$", views.SchemasView.as_view(), name="schemas"),
    re_path(r"^Bulk$", views.SCIMView.as_view(implemented=False), name="bulk"),
]
