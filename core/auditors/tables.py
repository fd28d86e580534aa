import django_tables2 as tables

from core.models import AuditorGrant


class EndGrantColumn(tables.TemplateColumn):
    """Compliance's forms on an open grant: a new password link for an auditor who has not chosen one yet, and
    ending the access now (leave the column out for anyone else)."""

    template_code = (
        '{% if record.is_open %}{% if not record.auditor.has_usable_password %}<form method="post" '
        'action="{% url \'auditors:send-link\' record.pk %}" class="inline-form">{% csrf_token %}'
        '<input type="hidden" name="next" value="{{ request.get_full_path }}"><button type="submit" '
        'class="button button-small">Send password link</button></form> {% endif %}'
        '<form method="post" action="{% url \'auditors:end\' record.pk %}" class="inline-form">'
        '{% csrf_token %}<input type="hidden" name="next" value="{{ request.get_full_path }}">'
        '<label class="visually-hidden" for="end-reason-{{ record.pk }}">Why end the access of '
        '{{ record.auditor.get_username }} now (optional)</label><input type="text" name="reason" '
        'id="end-reason-{{ record.pk }}" maxlength="200" placeholder="Why (optional)"> <button type="submit" '
        'class="button button-small button-danger">End now</button></form>{% else %}<span class="muted">—</span>'
        '{% endif %}'
    )
    empty_values = ()


class AuditorGrantTable(tables.Table):
    auditor = tables.TemplateColumn(
        '{{ record.auditor.get_username }}{% if record.auditor.get_full_name %}<br><span class="muted">'
        '{{ record.auditor.get_full_name }}</span>{% endif %}', verbose_name="Auditor")
    engagement = tables.Column()
    period = tables.TemplateColumn(
        '{{ record.starts_at|date:"SHORT_DATETIME_FORMAT" }} – {{ record.ends_at|date:"SHORT_DATETIME_FORMAT" }}',
        verbose_name="Access", empty_values=())
    state = tables.TemplateColumn(
        '<span class="badge badge-grant-{{ record.state }}">{{ record.get_state_display }}</span>'
        '{% if record.ended_by %}<br><span class="muted">{{ record.ended_at|date:"SHORT_DATETIME_FORMAT" }} by '
        '{{ record.ended_by.get_username }}{% if record.end_reason %}: {{ record.end_reason|truncatechars:80 }}'
        '{% endif %}</span>{% endif %}', verbose_name="State", empty_values=())
    granted = tables.TemplateColumn(
        '{{ record.granted_at|date:"SHORT_DATETIME_FORMAT" }}<br><span class="muted">by '
        '{{ record.granted_by.get_username }}</span>', verbose_name="Granted", empty_values=())
    end = EndGrantColumn(verbose_name="Actions")

    class Meta:
        model = AuditorGrant
        fields = ("auditor", "engagement", "period", "state", "granted", "end")
        attrs = {"class": "data-table"}
        row_attrs = {"id": lambda record: f"grant-{record.pk}"}
        orderable = False
        empty_text = "No auditor access matches."
