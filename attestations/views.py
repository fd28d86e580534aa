from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse(status=501)


inbox = bulk_confirm = item_detail = decide = answer_transfer = _todo
