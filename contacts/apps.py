from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Customer contacts"

    def ready(self):
        # Importing connects the sign-in receiver that marks a contact's session as scoped.
        from contacts import middleware  # noqa: F401
