"""PDF/A-3b markers of a PDF file, read back with pikepdf (veraPDF is not reachable from our machines).

``assert_pdfa3b`` checks what an archive-grade evidence file must have and what a merge or a signature
could lose: the XMP identification (``pdfaid:part`` 3, ``pdfaid:conformance`` B) agreeing with the
information dictionary, an sRGB output intent, every font embedded (page content, form XObjects such as
the page-number overlay, annotation appearances), annotations printable, no encryption, no JavaScript,
and each attachment described (``/AFRelationship``, MIME type, dates) and listed in the catalog's /AF.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pikepdf

PDFA_ID = "http://www.aiim.org/pdfa/ns/id/"
FONT_FILES = ("/FontFile", "/FontFile2", "/FontFile3")
# Information dictionary entries and the XMP properties PDF/A requires them to agree with.
INFO_TO_XMP = {"/Title": "dc:title", "/Author": "dc:creator", "/Subject": "dc:description", "/Producer": "pdf:Producer",
               "/Keywords": "pdf:Keywords", "/Creator": "xmp:CreatorTool"}
MIME_TYPE = re.compile(r"/(text|application)/[\w.+-]+")
ANNOT_PRINT, ANNOT_HIDDEN, ANNOT_INVISIBLE, ANNOT_NOVIEW, ANNOT_TOGGLENOVIEW = 4, 2, 1, 32, 256


@dataclass
class PdfaReport:
    pages: int = 0
    fonts: set[str] = field(default_factory=set)
    # Per page, the fonts reached through a form XObject (the page-number overlay is one).
    form_fonts_per_page: list[set[str]] = field(default_factory=list)
    attachments: dict[str, bytes] = field(default_factory=dict)
    producer: str = ""


def assert_pdfa3b(data: bytes) -> PdfaReport:
    report = PdfaReport()
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert not pdf.is_encrypted and "/Encrypt" not in pdf.trailer, "encrypted"
        assert len(pdf.trailer.get("/ID", [])) == 2, "no file identifier in the trailer"
        _check_xmp(pdf, report)
        _check_output_intent(pdf)
        report.pages = len(pdf.pages)
        for number, page in enumerate(pdf.pages, start=1):
            form_fonts: set[str] = set()
            _check_fonts(page.obj.get("/Resources"), report.fonts, form_fonts, f"page {number}", in_form=False,
                         seen=set())
            for annot in page.obj.get("/Annots", []):
                _check_annotation(annot, number)
                appearance = annot.get("/AP", {}).get("/N")
                if isinstance(appearance, pikepdf.Stream):
                    _check_fonts(appearance.get("/Resources"), report.fonts, form_fonts,
                                 f"page {number} annotation appearance", in_form=True, seen=set())
            report.form_fonts_per_page.append(form_fonts)
        assert report.fonts, "no font found"
        acroform = pdf.Root.get("/AcroForm")
        assert acroform is None or not acroform.get("/NeedAppearances", False), "NeedAppearances is true"
        _check_no_javascript(pdf)
        _check_attachments(pdf, report)
    return report


def _check_xmp(pdf: pikepdf.Pdf, report: PdfaReport) -> None:
    assert "/Metadata" in pdf.Root, "no XMP metadata stream"
    meta = pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False)
    assert meta.get(f"{{{PDFA_ID}}}part") == "3", meta.get(f"{{{PDFA_ID}}}part")
    assert meta.get(f"{{{PDFA_ID}}}conformance") == "B", meta.get(f"{{{PDFA_ID}}}conformance")
    info = pdf.docinfo
    for key, prop in INFO_TO_XMP.items():
        if key not in info:
            continue
        xmp_value = meta.get(prop)
        if isinstance(xmp_value, list | set):
            xmp_value = ", ".join(sorted(xmp_value))
        assert str(info[key]) == str(xmp_value), f"info {key} {str(info[key])!r} but XMP {prop} {xmp_value!r}"
    for key, prop in (("/CreationDate", "xmp:CreateDate"), ("/ModDate", "xmp:ModifyDate")):
        if key in info:
            assert meta.get(prop), f"info {key} without XMP {prop}"
    report.producer = str(meta.get("pdf:Producer", ""))


def _check_output_intent(pdf: pikepdf.Pdf) -> None:
    intents = [i for i in pdf.Root.get("/OutputIntents", []) if i.get("/S") == "/GTS_PDFA1"]
    assert len(intents) == 1, f"{len(intents)} PDF/A output intents"
    profile = intents[0].get("/DestOutputProfile")
    assert isinstance(profile, pikepdf.Stream), "output intent without an ICC profile"
    assert profile.get("/N") == 3, profile.get("/N")
    icc = profile.read_bytes()
    assert icc[36:40] == b"acsp" and icc[16:20] == b"RGB ", "not an RGB ICC profile"
    assert b"sRGB" in icc or b"s\x00R\x00G\x00B" in icc, "ICC profile is not sRGB"


def _font_descriptors(font: pikepdf.Dictionary):
    if font.get("/Subtype") == "/Type0":
        for descendant in font.get("/DescendantFonts", []):
            yield descendant.get("/FontDescriptor")
    elif font.get("/Subtype") != "/Type3":  # Type 3 glyphs are content streams, nothing to embed
        yield font.get("/FontDescriptor")


def _check_fonts(resources, fonts: set[str], form_fonts: set[str], where: str, *, in_form: bool, seen: set) -> None:
    if resources is None:
        return
    for name, font in resources.get("/Font", {}).items():
        base = str(font.get("/BaseFont", name))
        for descriptor in _font_descriptors(font):
            assert descriptor is not None, f"{where}: font {base} has no descriptor (not embedded)"
            assert any(key in descriptor for key in FONT_FILES), f"{where}: font {base} is not embedded"
        fonts.add(base)
        if in_form:
            form_fonts.add(base)
    for xobject in resources.get("/XObject", {}).values():
        if xobject.get("/Subtype") != "/Form" or xobject.objgen in seen:
            continue
        if xobject.is_indirect:
            seen.add(xobject.objgen)
        _check_fonts(xobject.get("/Resources"), fonts, form_fonts, f"{where} form XObject", in_form=True, seen=seen)
    for pattern in resources.get("/Pattern", {}).values():
        if isinstance(pattern, pikepdf.Stream):
            _check_fonts(pattern.get("/Resources"), fonts, form_fonts, f"{where} pattern", in_form=in_form, seen=seen)


def _check_annotation(annot: pikepdf.Dictionary, page: int) -> None:
    if annot.get("/Subtype") == "/Popup":
        return
    flags = int(annot.get("/F", 0))
    assert flags & ANNOT_PRINT, f"page {page}: annotation {annot.get('/Subtype')} is not printed (F={flags})"
    assert not flags & (ANNOT_HIDDEN | ANNOT_INVISIBLE | ANNOT_NOVIEW | ANNOT_TOGGLENOVIEW), f"page {page}: F={flags}"


def _check_no_javascript(pdf: pikepdf.Pdf) -> None:
    names = pdf.Root.get("/Names", {})
    assert "/JavaScript" not in names, "document-level JavaScript"
    assert "/AA" not in pdf.Root, "document additional actions"
    seen: set = set()
    stack = [pdf.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, pikepdf.Stream | pikepdf.Dictionary | pikepdf.Array) and obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            keys = set(obj.keys())
            assert not keys & {"/JS", "/JavaScript", "/AA"}, f"JavaScript or additional action in {obj.objgen}: {keys}"
            assert obj.get("/S") != "/JavaScript", f"JavaScript action {obj.objgen}"
            stack.extend(obj[key] for key in keys if key != "/Parent")
        elif isinstance(obj, pikepdf.Array):
            stack.extend(obj)


def _check_attachments(pdf: pikepdf.Pdf, report: PdfaReport) -> None:
    listed = {spec.objgen for spec in pdf.Root.get("/AF", []) if spec.is_indirect}
    for name, attachment in pdf.attachments.items():
        spec = attachment.obj
        assert spec.get("/F") and spec.get("/UF"), f"{name}: file specification without /F and /UF"
        assert spec.get("/AFRelationship") in ("/Data", "/Source", "/Alternative", "/Supplement", "/Unspecified"), name
        stream = spec.EF.get("/UF", spec.EF.get("/F"))
        assert stream.get("/Type") == "/EmbeddedFile", name
        assert MIME_TYPE.fullmatch(str(stream.get("/Subtype", ""))), f"{name}: MIME type {stream.get('/Subtype')}"
        params = stream.get("/Params", {})
        assert "/ModDate" in params and "/CreationDate" in params, f"{name}: {dict(params)}"
        assert spec.objgen in listed, f"{name} is not listed in the catalog's /AF"
        report.attachments[name] = attachment.get_file().read_bytes()
    assert len(listed) == len(report.attachments), "the catalog's /AF lists something that is not an attachment"
