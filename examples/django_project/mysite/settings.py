"""Settings for the example project: as small as Django allows.

No database, no templates, no static files: one JSON view.
"""
# Never use this key in production: read a real one from the environment.
SECRET_KEY = "granc-example-not-secret"

# With DEBUG off Django refuses requests whose Host header is not listed
# here (it answers 400), and shows no tracebacks to clients.
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

# No database is needed: the view below never queries one.
DATABASES = {}

USE_TZ = True
