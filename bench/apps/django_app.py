"""A one-file Django project for the "django-wsgi" and "django-asgi" cases:
one view answering a small JSON object, Django's CommonMiddleware, no
database, no templates.  The same view (synchronous, as most Django views
are) serves both interfaces: `django_app:wsgi` and `django_app:asgi`
(under ASGI, Django runs it in a thread through asgiref)."""
import django
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="granc-bench-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATABASES={},
    USE_TZ=True,
)
django.setup()


def hello(request):
    return JsonResponse({"message": "Hello, " + request.GET.get("name", "world"),
                         "method": request.method, "path": request.path})


urlpatterns = [path("", hello)]

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

wsgi = get_wsgi_application()
asgi = get_asgi_application()
