from django.urls import include, path

from identity import views

urlpatterns = [
    path("sso/", include("identity.sso.urls")),
    path("scim/v2/", include("identity.scim.urls")),
    path("identity/scim-tokens/", views.ScimTokenListView.as_view(), name="scim-tokens"),
    path("identity/scim-tokens/<int:pk>/revoke/", views.RevokeScimTokenView.as_view(), name="scim-token-revoke"),
]
