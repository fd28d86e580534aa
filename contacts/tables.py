import django_tables2 as tables

from contacts.models import CustomerContact


class CustomerContactTable(tables.Table):
    name = tables.Column(linkify=("contacts:detail", {"pk": tables.A("pk")}))
    email = tables.Column()
    customer = tables.Column(accessor="customer__name", verbose_name="Customer")
    key_count = tables.Column(verbose_name="Keys", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    pending_count = tables.Column(verbose_name="Pending", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    invited_at = tables.TemplateColumn(
        '{{ record.invited_at|date:"DATE_FORMAT" }}{% if record.invited_by %} by {{ record.invited_by.get_username }}{% endif %}',
        verbose_name="Invited",
    )
    is_active = tables.Column(verbose_name="Access")

    class Meta:
        model = CustomerContact
        fields = ("name", "email", "customer", "key_count", "pending_count", "invited_at", "is_active")
        attrs = {"class": "data-table"}
        orderable = False
        empty_text = "No customer contact matches."

    def render_is_active(self, value):
        return "Active" if value else "Deactivated"
