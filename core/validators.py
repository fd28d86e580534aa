"""Validators the apps' model fields share, and the way a service runs a model's field validators."""

import unicodedata

from django.core.exceptions import ValidationError

# Unicode direction controls (the Bidi_Control property: marks, embeddings, overrides, isolates) and
# zero-width or otherwise invisible characters. In a name they make it read as something it is not:
# "invoice\u202efdp.exe" shows as "invoiceexe.pdf"; "Acme\u200b" looks like "Acme".
HIDDEN_CHARACTERS = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, pop, overrides
    "\u2066\u2067\u2068\u2069"  # isolates and their pop
    "\u200b\u200c\u200d\u2060\ufeff\u180e"  # zero-width space, non-joiner, joiner, word joiner, no-break space; MVS
    "\u2061\u2062\u2063\u2064"  # invisible function application, times, separator, plus
)


def refuse_hidden_characters(value) -> None:
    """Refuse a name or label holding a text-direction control or a zero-width character, naming each one found
    by code point (the character itself would not show in the message either)."""
    if not isinstance(value, str):
        return
    found = sorted({character for character in value if character in HIDDEN_CHARACTERS})
    if not found:
        return
    names = ", ".join(f"U+{ord(c):04X} ({unicodedata.name(c, 'unnamed').lower()})" for c in found)
    raise ValidationError(
        "Remove the invisible character%(plural)s %(names)s: names and labels may not contain text-direction "
        "controls or zero-width characters.",
        code="hidden_characters", params={"plural": "s" if len(found) > 1 else "", "names": names},
    )


def field_errors(model, **values) -> dict[str, list[str]]:
    """What ``model``'s own field validators say of ``values`` (field name -> value), per field: for a service that
    builds a row from a plain form, an API payload or a CSV row, so it refuses what a model form would."""
    errors = {}
    for name, value in values.items():
        try:
            model._meta.get_field(name).run_validators(value)
        except ValidationError as refused:
            errors[name] = refused.messages
    return errors
