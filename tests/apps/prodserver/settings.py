"""djsite's settings plus what django-prodserver reads.  The test sets the
backend and its ARGS (JSON, string values as in a settings file) in the
environment."""
import json
import os

from djsite.settings import *  # noqa: F401,F403
from djsite.settings import INSTALLED_APPS

INSTALLED_APPS = INSTALLED_APPS + ["prodserver"]
ASGI_APPLICATION = "djsite.asgi.application"
WSGI_APPLICATION = "djsite.wsgi.application"
PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": os.environ.get("PRODSERVER_BACKEND",
                                  "prodserver.backends.GranianASGIServer"),
        "ARGS": json.loads(os.environ.get("PRODSERVER_ARGS", "{}")),
    },
}
