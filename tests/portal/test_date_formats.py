"""One way of writing dates: pages use "10 Nov 2026" and "10 Nov 2026 14:05" in the portal's TIME_ZONE, whatever
the language's own formats; evidence PDFs write their times in UTC and say so."""

import datetime
import io
from types import SimpleNamespace

from django.template.loader import render_to_string
from django.utils import translation
from pypdf import PdfReader

from attestations.services import evidence_pdf

AT = datetime.datetime(2026, 11, 10, 13, 5, tzinfo=datetime.UTC)


def test_a_page_shows_dates_and_times_in_the_portal_format_and_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    row = {"trail": [{"stage": 1, "decision_label": "Confirmed", "by": "owner1", "as_label": "as owner", "at": AT}]}
    for language in ("en-gb", "en-us", "en"):
        with translation.override(language):
            html = render_to_string("attestations/_decision_trail.html", {"row": row})
        assert ">10 Nov 2026 14:05</time>" in html, (language, html)


def test_named_formats_are_the_portal_ones_in_every_english():
    from django.utils import formats

    for language in ("en-gb", "en-us", "en"):
        with translation.override(language):
            assert formats.date_format(AT.date(), "DATE_FORMAT") == "10 Nov 2026"
            assert formats.date_format(AT.date(), "SHORT_DATE_FORMAT") == "10 Nov 2026"
            assert formats.date_format(AT, "DATETIME_FORMAT") == "10 Nov 2026 13:05"
            assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "10 Nov 2026 13:05"


def test_an_evidence_pdf_states_times_in_utc(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    event = SimpleNamespace(at=AT, get_action_display="Confirmed", from_status="", to_status="",
                            actor=SimpleNamespace(get_username="owner1"), reason="confirmed in campaign 2026-Q4")
    document = evidence_pdf.layout("evidence/_events.html", {"events": [event], "empty": ""})
    text = PdfReader(io.BytesIO(evidence_pdf.write_pdf(document))).pages[0].extract_text()
    assert "2026-11-10 13:05:00 UTC" in text, text
