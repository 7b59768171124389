"""Apps for tests/test_lifecycle.py: a WSGI `app` and an ASGI `asgi`, each
with /hello (tiny, for load) and /slow?t=SECONDS (SLOW_BODY after the sleep).

With $ARRIVALS set, /slow appends "<pid> <arrival time>" to that file (one
line each, O_APPEND: safe across threads and workers).  With $LIFESPAN_REPORT
set, the ASGI app appends "done <pid> <time>" to that file once /slow has
sent its response, and "shutdown <pid> <time>" in the lifespan shutdown.
"""
import asyncio
import os
import time
from urllib.parse import parse_qs

SLOW_SIZE = 100000
SLOW_BODY = bytes(i % 251 for i in range(SLOW_SIZE))


def _note(var, what=b""):
    path = os.environ.get(var)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, what + b"%d %.6f\n" % (os.getpid(), time.time()))
        finally:
            os.close(fd)


def _seconds(qs):
    return float(parse_qs(qs).get("t", ["2"])[0])


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        t = _seconds(environ["QUERY_STRING"])
        _note("ARRIVALS")
        time.sleep(t)
        start_response("200 OK", [("content-type", "application/octet-stream"),
                                  ("content-length", str(SLOW_SIZE))])
        return [SLOW_BODY]
    if path == "/hello":
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "2")])
        return [b"ok"]
    start_response("404 Not Found", [("content-type", "text/plain"), ("content-length", "0")])
    return [b""]


async def _send(send, status, body, ctype=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                _note("LIFESPAN_REPORT", b"shutdown ")
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/slow":
        t = _seconds(scope["query_string"].decode())
        _note("ARRIVALS")
        await asyncio.sleep(t)
        await _send(send, 200, SLOW_BODY, b"application/octet-stream")
        _note("LIFESPAN_REPORT", b"done ")
    elif path == "/hello":
        await _send(send, 200, b"ok")
    else:
        await _send(send, 404, b"")
