from rest_framework.routers import SimpleRouter

from keys.api import exception_views, exposure_views, usage_views, views

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("workflows", views.WorkflowViewSet, basename="workflow")
router.register("keys", views.ApiKeyViewSet, basename="apikey")
router.register("exceptions", exception_views.KeyExceptionViewSet, basename="keyexception")
router.register("usage", usage_views.UsageViewSet, basename="usage")
router.register("exposures", exposure_views.ExposureViewSet, basename="exposure")

urlpatterns = router.urls
