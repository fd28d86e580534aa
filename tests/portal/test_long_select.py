"""core.widgets.LongSelect writes the options Django's Select would, without a template per option."""

import re

from django import forms

from core.widgets import LongSelect

CHOICES = [("", "Any customer"), (1, "Acme"), (2, 'Tom & "Jerry" <Ltd>'), (10, "Zeta")]


def parsed(html: str):
    select = re.search(r"<select([^>]*)>(.*)</select>", html, re.S)
    attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', select.group(1)))
    attrs.update({bare: True for bare in re.findall(r'\s([\w-]+)(?=\s|$)', select.group(1))})
    options = re.findall(r'<option value="([^"]*)"(\s+selected)?>(.*?)</option>', select.group(2), re.S)
    return attrs, [(value, bool(selected), label.strip()) for value, selected, label in options]


def test_the_same_select_as_djangos():
    for value in (None, "", 2, "10"):
        attrs = {"id": "id_customer", "aria-describedby": "help", "required": True}
        expected = forms.Select(choices=CHOICES, attrs={"hx-get": "/x"}).render("customer", value, attrs=attrs)
        written = LongSelect(choices=CHOICES, attrs={"hx-get": "/x"}).render("customer", value, attrs=attrs)
        assert parsed(written) == parsed(expected), value
    assert "Tom &amp; &quot;Jerry&quot; &lt;Ltd&gt;" in written and "<Ltd>" not in written
