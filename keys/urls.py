from django.urls import path

from . import exception_views, import_views, views

app_name = "keys"

urlpatterns = [
    path("", views.KeyListView.as_view(), name="list"),
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
