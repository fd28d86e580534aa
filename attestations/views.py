from django.http import HttpResponse
from django.views import View


def _todo(request, *args, **kwargs):
    return HttpResponse(status=501)


inbox = bulk_confirm = item_detail = decide = answer_transfer = _todo
campaign_create = campaign_detail = campaign_action = _todo


class CampaignListView(View):
    get = _todo
