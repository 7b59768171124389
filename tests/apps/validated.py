"""An app wrapped in wsgiref.validate: any PEP 3333 slip by the server
raises an AssertionError or emits a WSGIWarning."""
import warnings
from wsgiref.validate import validator

warnings.simplefilter("always")


def inner(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"].readline()
    list(environ["wsgi.input"])
    out = b"validated %d" % len(body)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]


app = validator(inner)
