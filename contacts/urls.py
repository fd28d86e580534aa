from django.urls import path

from contacts import views

app_name = "contacts"
urlpatterns = [
    path("contacts/", views.ContactListView.as_view(), name="list"),
    path("contacts/invite/", views.invite, name="invite"),
    path("contacts/<int:pk>/", views.contact_detail, name="detail"),
    path("contacts/<int:pk>/send-link/", views.send_link, name="send-link"),
    path("contacts/<int:pk>/assign/", views.assign, name="assign"),
    path("contacts/<int:pk>/deactivate/", views.deactivate, name="deactivate"),
    path("contacts/<int:pk>/erase/", views.erase, name="erase"),
    # The customer contact's side.
    path("c/<str:token>/", views.link_access, name="access"),
    path("contact/code/", views.code, name="code"),
    path("contact/code/resend/", views.code_resend, name="code-resend"),
    path("contact/", views.home, name="home"),
    path("contact/items/<int:pk>/decide/", views.decide, name="decide"),
    path("contact/sign-out/", views.sign_out, name="sign-out"),
]
