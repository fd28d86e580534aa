from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("workflows", views.WorkflowViewSet, basename="workflow")
router.register("keys", views.ApiKeyViewSet, basename="apikey")

urlpatterns = router.urls
