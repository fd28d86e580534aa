from rest_framework.routers import SimpleRouter

from attestations.api import export_views, views

router = SimpleRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("attestations", views.AttestationItemViewSet, basename="attestation")

# Evidence exports have their own router (and permission matrix, tests/api/test_exports_api.py).
exports_router = SimpleRouter()
exports_router.register("exports", export_views.EvidenceExportViewSet, basename="export")

urlpatterns = router.urls + exports_router.urls
