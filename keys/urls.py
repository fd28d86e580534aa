from django.urls import path

from . import import_views, views

app_name = "keys"

urlpatterns = [
    path("", views.KeyListView.as_view(), name="list"),
    path("register/", views.register_key_view, name="register"),
    path("import/", import_views.import_keys_view, name="import"),
    path("<int:pk>/", views.key_detail, name="detail"),
    path("<int:pk>/<slug:action>/", views.key_action, name="action"),
]
