import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from dashboard.models import CustomerKeyCounts


def _number(verbose_name: str, **kwargs) -> tables.Column:
    return tables.Column(verbose_name=verbose_name, attrs={"th": {"class": "num"}, "td": {"class": "num"}}, **kwargs)


class CustomerKeyCountsTable(tables.Table):
    """Keys per customer as the summary counted them; each column sorts the list (the customer's id breaks ties)."""

    customer = tables.Column(accessor="customer__name", verbose_name="Customer", order_by=("customer__name",))
    contract = tables.Column(accessor="customer__contract_status", verbose_name="Contract",
                             order_by=("customer__contract_status", "customer__name"))
    total = _number("Total")
    pending = _number("Pending")
    active = _number("Active")
    suspended = _number("Suspended")
    revoked = _number("Revoked")
    expired = _number("Expired")
    due_for_review = _number("Review due")
    expiring = _number("Expiring")
    flagged = _number("Flagged")

    class Meta:
        model = CustomerKeyCounts
        fields = ("customer", "contract", "total", "pending", "active", "suspended", "revoked", "expired",
                  "due_for_review", "expiring", "flagged")
        attrs = {"class": "data-table"}
        empty_text = "No customer matches these filters."

    def render_customer(self, record):
        return format_html('<a href="{}?customer={}">{}</a>', reverse("keys:list"), record.customer_id,
                           record.customer.name)

    def render_contract(self, record):
        status = record.customer.contract_status
        return format_html('<span class="badge badge-contract-{}">{}</span>', status,
                           record.customer.get_contract_status_display())
