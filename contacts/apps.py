from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Customer contacts"

    def ready(self):
        # Importing connects the sign-in receiver that marks a contact's session as scoped.
        from attestations.signals import reviewer_notice
        from contacts import access, middleware  # noqa: F401
        from contacts.models import CustomerContact
        from core import chain

        chain.declare_personal(CustomerContact, ["name", "email"], salt_column="personal_salt")

        reviewer_notice.connect(access.notify_reviewer, dispatch_uid="contact-reviewer-link")
