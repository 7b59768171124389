"""The one view, answering JSON."""
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse


def hello(request):
    # The same view runs under both interfaces: Django builds an ASGIRequest
    # from an ASGI scope and a WSGIRequest from a WSGI environ.
    return JsonResponse({
        "message": "Hello, " + request.GET.get("name", "world"),
        "method": request.method,
        "path": request.path,
        "interface": "asgi" if isinstance(request, ASGIRequest) else "wsgi",
    })
