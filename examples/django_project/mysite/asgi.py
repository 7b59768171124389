"""ASGI entry point.  From the repository root:

    ./granc --interface asgi --working-dir examples/django_project mysite.asgi:application

Django runs the (synchronous) view in a thread.  Django 3.2 does not speak
the ASGI lifespan protocol: granc logs "ASGI Lifespan errored, continuing
without Lifespan support" once per worker and serves requests anyway, as
Granian does.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_asgi_application()
