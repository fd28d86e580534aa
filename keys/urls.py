from django.urls import path

from keys.views import exceptions as exception_views
from keys.views import exposures as exposure_views
from keys.views import imports as import_views
from keys.views import keys as views
from keys.views import releases as release_views
from keys.views import revocations as revocation_views
from keys.views import tokens as token_views

app_name = "keys"

urlpatterns = [
    path("", views.KeyListView.as_view(), name="list"),
    path("filters/", views.save_filter_view, name="filter-save"),
    path("filters/workflows/", views.workflow_options_view, name="workflow-options"),
    path("filters/<int:pk>/delete/", views.delete_filter_view, name="filter-delete"),
    path("register/", views.register_key_view, name="register"),
    path("import/", import_views.import_keys_view, name="import"),
    path("<int:pk>/", views.key_detail, name="detail"),
    path("<int:pk>/<slug:action>/", views.key_action, name="action"),
]

urlpatterns += [
    path("exceptions/", exception_views.ExceptionListView.as_view(), name="exceptions"),
    path("exceptions/new/<int:key_pk>/", exception_views.request_exception_view, name="exception-request"),
    path("exceptions/<int:pk>/", exception_views.exception_detail, name="exception"),
    path("exceptions/<int:pk>/<slug:action>/", exception_views.exception_action, name="exception-action"),
]

urlpatterns += [
    path("revocations/", revocation_views.RevocationListView.as_view(), name="revocations"),
    path("revocations/<int:pk>/confirm/", revocation_views.confirm_revocation_view, name="revocation-confirm"),
]

urlpatterns += [
    path("tokens/", token_views.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:pk>/revoke/", token_views.RevokeTokenView.as_view(), name="token-revoke"),
    path("exposures/", exposure_views.ExposureListView.as_view(), name="exposures"),
    path("exposures/report/", exposure_views.report_exposure_view, name="exposure-report"),
    path("exposures/<int:pk>/triage/", exposure_views.triage_exposure_view, name="exposure-triage"),
]

urlpatterns += [
    path("releases/", release_views.ReleaseListView.as_view(), name="releases"),
    path("releases/<int:pk>/<slug:action>/", release_views.release_action, name="release-action"),
]
