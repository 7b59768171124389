"""The smallest WSGI app: `./granc --interface wsgi examples/hello.py`."""


def app(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
    return [body]
