from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("customers/", views.CustomerKeyCountsListView.as_view(), name="customers"),
]
