"""A finished export of the owner's key dossier, for permission matrices (pages and API)."""

from django.core.files.base import ContentFile

from attestations.models import EvidenceExport

from .evidence_helpers import decided_campaign

PDF_STUB = b"%PDF-1.7\n% evidence export stand-in for permission tests\n%%EOF\n"


def export_world(owner, other_owner, compliance_user, admin_user, key, other_key) -> dict:
    """Every role, a key each for the owner and the other owner, and a decided campaign."""
    campaign = decided_campaign(compliance_user, owner, other_owner)[0]
    return {"anon": None, "owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user,
            "key": key, "other_key": other_key, "campaign": campaign}


def owner_dossier_export(world) -> EvidenceExport:
    """The owner's key dossier, done, with a stored file; created once per world."""
    if "export" not in world:
        export = EvidenceExport(kind=EvidenceExport.Kind.KEY, key=world["key"], requested_by=world["owner"],
                                status=EvidenceExport.Status.DONE, progress=100,
                                parameters={"kind": "key", "key": world["key"].pk, "subject": str(world["key"])})
        export.file.save("evidence-test.pdf", ContentFile(PDF_STUB), save=False)
        export.sha256, export.size, export.page_count = "0" * 64, len(PDF_STUB), 1
        export.save()
        world["export"] = export
    return world["export"]


def campaign_export(world) -> EvidenceExport:
    if "campaign_export" not in world:
        world["campaign_export"] = EvidenceExport.objects.create(
            kind=EvidenceExport.Kind.CAMPAIGN, campaign=world["campaign"], requested_by=world["compliance"],
            parameters={"kind": "campaign", "campaign": world["campaign"].pk, "subject": world["campaign"].name})
    return world["campaign_export"]
