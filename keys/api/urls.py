from rest_framework.routers import SimpleRouter

from . import exception_views, views

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("workflows", views.WorkflowViewSet, basename="workflow")
router.register("keys", views.ApiKeyViewSet, basename="apikey")
router.register("exceptions", exception_views.KeyExceptionViewSet, basename="keyexception")

urlpatterns = router.urls
