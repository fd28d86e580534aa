from django.urls import path

from core.auditors import views

app_name = "auditors"
urlpatterns = [
    path("auditors/", views.GrantListView.as_view(), name="list"),
    path("auditors/grant/", views.grant, name="grant"),
    path("auditors/<int:pk>/end/", views.end, name="end"),
    path("auditors/<int:pk>/send-link/", views.send_link, name="send-link"),
    path("account/set-password/done/", views.PasswordSetView.as_view(), name="password-set"),
    path("account/set-password/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set-password"),
]
