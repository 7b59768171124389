"""A plain WSGI app (PEP 3333), no framework.

Run it from the repository root:

    ./granc --interface wsgi examples/wsgi_app.py

granc imports this file and calls `app` (the default attribute name) once
per request, from one of its worker threads (`--blocking-threads`).

Routes:
    GET  /        plain text
    POST /echo    sends the request body back, read and sent in chunks
    GET  /stream  a response produced piece by piece by a generator
    GET  /env     a few WSGI environ keys, as JSON
"""
import json
import time

CHUNK = 64 * 1024  # how much of the request body we hold at a time


def index(environ, start_response):
    body = b"Hello from a plain WSGI app!\n"
    # Sending content-length lets the client reuse the connection without
    # chunked encoding; granc adds "date" and "server" itself.
    start_response("200 OK", [("content-type", "text/plain; charset=utf-8"),
                              ("content-length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        return not_allowed(environ, start_response, "POST")
    stream = environ["wsgi.input"]

    def chunks():
        # Read the body a chunk at a time and send each chunk on at once:
        # a 1 GB upload never sits in memory.  read() returns b"" at the end
        # of the body, whether the client sent content-length or chunked.
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            yield data

    headers = [("content-type",
                environ.get("CONTENT_TYPE") or "application/octet-stream")]
    if environ.get("CONTENT_LENGTH"):
        # Same length in as out: the client gets a content-length back.
        headers.append(("content-length", environ["CONTENT_LENGTH"]))
    # Without a content-length, granc answers with chunked encoding.
    start_response("200 OK", headers)
    return chunks()


def stream(environ, start_response):
    def count():
        # Every yielded bytes object goes to the client as it is produced
        # (no content-length here, so granc uses chunked encoding).
        for i in range(1, 6):
            yield f"line {i}\n".encode()
            time.sleep(0.05)  # pretend each line takes some work
    start_response("200 OK", [("content-type", "text/plain; charset=utf-8")])
    return count()


def env(environ, start_response):
    keys = ["REMOTE_ADDR", "wsgi.url_scheme", "SERVER_PROTOCOL",
            "SCRIPT_NAME", "PATH_INFO"]
    body = json.dumps({k: environ.get(k) for k in keys}, indent=2).encode()
    start_response("200 OK", [("content-type", "application/json"),
                              ("content-length", str(len(body)))])
    return [body]


def not_allowed(environ, start_response, allow):
    body = b"method not allowed\n"
    start_response("405 Method Not Allowed",
                   [("content-type", "text/plain"), ("allow", allow),
                    ("content-length", str(len(body)))])
    return [body]


def not_found(environ, start_response):
    body = b"not found\n"
    start_response("404 Not Found", [("content-type", "text/plain"),
                                     ("content-length", str(len(body)))])
    return [body]


ROUTES = {"/": index, "/echo": echo, "/stream": stream, "/env": env}


def app(environ, start_response):
    """The WSGI entry point: pick a handler by path."""
    handler = ROUTES.get(environ["PATH_INFO"], not_found)
    return handler(environ, start_response)
