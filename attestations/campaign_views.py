from django.http import HttpResponse
from django.views import View


def _todo(request, *args, **kwargs):
    return HttpResponse(status=501)


campaign_create = campaign_detail = campaign_action = _todo


class CampaignListView(View):
    get = _todo
