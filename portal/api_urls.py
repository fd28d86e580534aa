"""Every app's API routes under /api/v1/, and a browsable root listing them."""

from django.urls import include, path
from rest_framework.routers import APIRootView

from attestations.api.urls import exports_router
from attestations.api.urls import router as attestations_router
from keys.api.urls import router as keys_router

ROUTERS = (keys_router, attestations_router, exports_router)

api_root = APIRootView.as_view(
    api_root_dict={prefix: f"{basename}-list" for router in ROUTERS for prefix, _, basename in router.registry}
)

urlpatterns = [
    path("", api_root, name="api-root"),
    path("", include("keys.api.urls")),
    path("", include("attestations.api.urls")),
]
