from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("attestations", views.AttestationItemViewSet, basename="attestation")

urlpatterns = router.urls
