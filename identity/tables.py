import django_tables2 as tables
from django.utils.safestring import mark_safe

from identity.models import ScimToken


class ScimTokenTable(tables.Table):
    name = tables.Column()
    token_prefix = tables.TemplateColumn('<code class="prefix">{{ record.token_prefix }}…</code>', verbose_name="Token")
    acts_as = tables.Column(verbose_name="Acts as")
    created_at = tables.TemplateColumn(
        '{{ record.created_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.created_by.get_username }}</span>',
        verbose_name="Created",
    )
    last_used_at = tables.TemplateColumn(
        '{% if record.last_used_at %}{{ record.last_used_at|date:"SHORT_DATETIME_FORMAT" }}{% if record.last_used_from %}'
        '<br><span class="muted">from {{ record.last_used_from }}</span>{% endif %}{% else %}<span class="muted">never</span>'
        "{% endif %}",
        verbose_name="Last used",
    )
    status = tables.TemplateColumn(
        '{% if record.is_active %}<span class="badge">Active</span>{% else %}<span class="badge badge-flag">Revoked '
        '{{ record.revoked_at|date:"SHORT_DATE_FORMAT" }}</span>{% endif %}',
        verbose_name="Status",
    )
    actions = tables.TemplateColumn(
        '{% if record.is_active %}<form method="post" action="{% url \'scim-token-revoke\' record.pk %}" class="inline-form">'
        '{% csrf_token %}<button type="submit" class="button button-small">Revoke</button></form>{% endif %}',
        verbose_name=mark_safe('<span class="visually-hidden">Actions</span>'),
    )

    class Meta:
        model = ScimToken
        fields = ("name", "token_prefix", "acts_as", "created_at", "last_used_at", "status", "actions")
        attrs = {"class": "data-table"}
        row_attrs = {"id": lambda record: f"scim-token-{record.pk}"}
        orderable = False
        empty_text = "No SCIM tokens yet."

    def render_acts_as(self, record):
        return record.acts_as.get_username()
