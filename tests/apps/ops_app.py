"""Apps for tests/test_ops.py: a WSGI `app` and an ASGI `asgi`.

/who     the client and scheme as the app sees them, the X-Forwarded-*
         headers it got, its pid, and the process variables that a
         supervisor (systemd) may have set: {"addr", "port", "scheme",
         "xff", "xfp", "pid", "env"}
/slow?t= sleep that many seconds (default 1), then "slow done"; with
         $OPS_ARRIVALS set, first append a line to that file (the test
         then knows the request is in flight)
/healthz "ok" (WSGI), for a load balancer's health checks
/ws      (ASGI websocket) accept, send /who's JSON as text, close
"""
import asyncio
import json
import os
import time
from urllib.parse import parse_qs

SUPERVISOR_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


def _env():
    return {k: os.environ[k] for k in SUPERVISOR_VARS if k in os.environ}


def _arrived():
    path = os.environ.get("OPS_ARRIVALS")
    if path:
        with open(path, "a") as f:
            f.write("%d\n" % os.getpid())


def _seconds(qs):
    return float(parse_qs(qs).get("t", ["1"])[0])


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        _arrived()
        time.sleep(_seconds(environ["QUERY_STRING"]))
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "9")])
        return [b"slow done"]
    if path == "/healthz":
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "2")])
        return [b"ok"]
    if path == "/who":
        body = json.dumps({
            "addr": environ["REMOTE_ADDR"], "port": environ["REMOTE_PORT"],
            "scheme": environ["wsgi.url_scheme"],
            "xff": environ.get("HTTP_X_FORWARDED_FOR"),
            "xfp": environ.get("HTTP_X_FORWARDED_PROTO"),
            "pid": os.getpid(), "env": _env()}).encode()
        start_response("200 OK", [("content-type", "application/json"),
                                  ("content-length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("content-type", "text/plain"), ("content-length", "0")])
    return [b""]


def _scope_info(scope):
    h = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client")
    return {"addr": client[0] if client else None,
            "port": str(client[1]) if client else None,
            "scheme": scope["scheme"],
            "xff": h.get("x-forwarded-for"), "xfp": h.get("x-forwarded-proto"),
            "pid": os.getpid(), "env": _env()}


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
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_scope_info(scope))})
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path == "/slow":
        _arrived()
        await asyncio.sleep(_seconds(scope["query_string"].decode()))
        await _send(send, 200, b"slow done")
    elif path == "/who":
        await _send(send, 200, json.dumps(_scope_info(scope)).encode(), b"application/json")
    else:
        await _send(send, 404, b"")
