"""WSGI entry point.  From the repository root:

    ./granc --interface wsgi --working-dir examples/django_project mysite.wsgi:application

--working-dir puts examples/django_project first on sys.path, so that
"mysite" can be imported.
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
