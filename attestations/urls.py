from django.urls import path

from attestations.views import campaigns as campaign_views
from attestations.views import exports as evidence_views
from attestations.views import inbox as views
from attestations.views import successions as succession_views

app_name = "attestations"

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/bulk-decide/", views.bulk_decide, name="bulk-decide"),
    path("inbox/bulk-confirm/", views.bulk_decide, name="bulk-confirm"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/decide/", views.decide, name="decide"),
    path("transfers/<int:pk>/<slug:answer>/", views.answer_transfer, name="transfer"),
    path("campaigns/", campaign_views.CampaignListView.as_view(), name="campaigns"),
    path("campaigns/new/", campaign_views.campaign_create, name="campaign-create"),
    path("campaigns/<int:pk>/", campaign_views.CampaignDetailView.as_view(), name="campaign"),
    path("campaigns/<int:pk>/<slug:action>/", campaign_views.campaign_action, name="campaign-action"),
    path("exports/", evidence_views.ExportListView.as_view(), name="exports"),
    path("exports/new/", evidence_views.export_create, name="export-create"),
    path("exports/certificate.pem", evidence_views.export_certificate, name="export-certificate"),
    path("exports/<int:pk>/", evidence_views.export_detail, name="export"),
    path("exports/<int:pk>/download/", evidence_views.export_download, name="export-download"),
    path("exports/<int:pk>/progress/", evidence_views.export_progress, name="export-progress"),
    path("successions/", succession_views.SuccessionListView.as_view(), name="successions"),
    path("successions/<int:pk>/name/", succession_views.name_successor, name="succession-name"),
]
