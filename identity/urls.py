from django.urls import include, path

urlpatterns = [
    path("sso/", include("identity.sso.urls")),
]
