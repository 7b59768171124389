import hashlib

from django.http import HttpResponse, JsonResponse
from django.template import engines
from django.views.decorators.csrf import csrf_exempt

PAGE = engines["django"].from_string(
    "<h1>Hello {{ name }}</h1><p>{{ path }}</p><p>{{ items|length }} items</p>")


def index(request):
    return HttpResponse(PAGE.render({"name": request.GET.get("name", "world"),
                                     "path": request.path, "items": [1, 2, 3]}))


def form(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"fields": dict(request.POST.items()),
                         "script_name": request.META.get("SCRIPT_NAME", "")})


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    h = hashlib.sha256()
    for chunk in f.chunks():
        h.update(chunk)
    return JsonResponse({"name": f.name, "size": f.size, "sha256": h.hexdigest()})
