from django import template
from django.forms import BoundField
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def decision_field(field: BoundField, panel_id: str = "") -> str:
    """One field of a decision form as its panel shows it: the input, its label and its errors. Its id is the
    panel's and the field's name (``panel_id``; the form's own ids without one), as rows may share a blank form.

    Written out here rather than by the widget's and the label's templates, which cost too much at the two
    hundred panels of an inbox page; the form still says which fields there are, their labels and values.
    """
    field_id = escape(f"{panel_id}-{field.html_name}" if panel_id else field.auto_id)
    name, errors, kind = field.html_name, field.errors, field.widget_type
    invalid = f' aria-invalid="true" aria-describedby="{field_id}-error"' if errors else ""
    error = f'<p class="field-error" id="{field_id}-error" role="alert">{escape(" ".join(errors))}</p>' if errors else ""
    label = f'<label for="{field_id}">{escape(field.label)}</label>'
    value = field.value()
    if kind == "checkbox":
        checked = " checked" if value else ""
        return mark_safe(f'<div class="field field-check{" field-invalid" if errors else ""}">'
                         f'<input type="checkbox" name="{name}" value="on" id="{field_id}"{checked}{invalid}>'
                         f"{label}{error}</div>")
    if kind == "select":
        options = "".join(
            f'<option value="{escape(choice)}"{" selected" if str(choice) == str(value or "") else ""}>'
            f"{escape(text)}</option>" for choice, text in field.field.choices)
        return mark_safe(f'<div class="field{" field-invalid" if errors else ""}">{label}'
                         f'<select name="{name}" id="{field_id}"{invalid}>{options}</select>{error}</div>')
    value = "" if value is None else escape(value)
    length = field.field.max_length
    if kind == "textarea":
        widget = f'<textarea name="{name}" id="{field_id}" rows="2" maxlength="{length}"{invalid}>{value}</textarea>'
    else:
        widget = (f'<input type="text" name="{name}" id="{field_id}" value="{value}" maxlength="{length}" '
                  f'autocomplete="off"{invalid}>')
    return mark_safe(f'<div class="field{" field-invalid" if errors else ""}">{label}{widget}{error}</div>')
