from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from core import two_factor
from core.schema import DocsView, SchemaView
from dashboard import views
from identity.sso.forms import AdminPasswordSignInForm
from identity.sso.views import SignInView
from ops import health, metrics

# With PASSWORD_LOGIN off, the admin's sign-in refuses employees' passwords as the portal's does.
admin.site.login_form = AdminPasswordSignInForm

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/two-factor/", two_factor.two_factor_setup, name="two-factor-setup"),
    path("account/two-factor/verify/", two_factor.two_factor_verify, name="two-factor-verify"),
    path("dashboard/", include("dashboard.urls")),
    path("keys/", include("keys.urls")),
    path("", include("attestations.urls")),
    path("", include("contacts.urls")),
    path("", include("identity.urls")),
    path("", include("core.auditors.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api_urls")),
    # Open to anonymous callers only with API_DOCS_PUBLIC (on locally, off in production).
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: no inline script for the CSP to allow.
    path(
        "api/docs/",
        DocsView.as_view(url_name="api-schema", template_name="portal/swagger_ui.html"),
        name="api-docs",
    ),
    # Operations: anyone gets the status code; details and metrics only from allowed addresses (or the token).
    path("health/", health.HealthView.as_view(), name="health"),
    path("metrics", metrics.metrics, name="metrics"),
]
