class ServiceError(Exception):
    """A refused business operation. ``errors`` maps a field name (or ``__all__``) to messages."""

    def __init__(self, message: str | dict[str, list[str] | str], field: str = "__all__"):
        if isinstance(message, dict):
            self.errors = {k: v if isinstance(v, list) else [v] for k, v in message.items()}
        else:
            self.errors = {field: [message]}
        super().__init__("; ".join(m for messages in self.errors.values() for m in messages))

    @property
    def messages(self) -> list[str]:
        return [m for messages in self.errors.values() for m in messages]


class ServiceErrorsMixin:
    """For a form whose submission goes through a service that may refuse it: the refusal's messages go
    beside the fields they name, the others on top of the form."""

    def call_service(self, service):
        """``service(cleaned_data)`` if the form is valid, and what it returns; a refusal goes on the form,
        so that ``is_valid()`` says afterwards whether it was done."""
        if self.is_valid():
            try:
                return service(self.cleaned_data)
            except ServiceError as error:
                self.add_service_errors(error)
        return None

    def add_service_errors(self, error: ServiceError) -> None:
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
