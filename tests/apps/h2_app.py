"""The app test_http2.py and test_h2spec.py serve over HTTP/2: the same
routes for WSGI (`h2_app:wsgi`), ASGI (`h2_app:asgi`) and RSGI
(`h2_app:rsgi`), each reporting what the app saw, so that one client test
can be run against every interface.

Routes (query arguments in brackets):
  /            a small 200 for any method (reads the body): h2spec's path
  /info        JSON: version, method, path, query, scheme, headers, host,
               cookie, root path, authority, as the interface shows them
  /echo        the request body back (WSGI reads wsgi.input in 8 KiB
               pieces, ASGI receive() streamed, RSGI `await protocol()`)
  /echo_iter   RSGI `async for chunk in protocol`; others as /echo
  /digest      JSON {length, sha256} of the body, streamed (no buffering)
  /big [n]     n bytes of pattern(n), with content-length
  /conn_hdrs   a response with connection-specific headers and a length
  /status [code]  an empty response with that status (204, 304)
  /slow [t, n]  sleeps t seconds, then answers n bytes of pattern
  /trailers    ASGI only: body, then http.response.trailers
  /file [path] the file: pathsend / wsgi.file_wrapper / response_file
  /conc [t]    sleeps t seconds, recording how many run at once; the
               maximum so far is in the x-max-concurrency response header
"""
import asyncio
import hashlib
import json
import threading
import time
from urllib.parse import parse_qs

PATTERN = bytes(range(256)) * 4096          # 1 MiB


def pattern(n):
    """n deterministic bytes (the client computes the same)."""
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


def _q(qs):
    return {k: v[0] for k, v in parse_qs(qs).items()}


_lock = threading.Lock()
_conc = {"now": 0, "max": 0}


def _enter():
    with _lock:
        _conc["now"] += 1
        _conc["max"] = max(_conc["max"], _conc["now"])


def _leave():
    with _lock:
        _conc["now"] -= 1
        return _conc["max"]


CONN_HDRS = [("content-type", "text/plain"), ("connection", "keep-alive"),
             ("keep-alive", "timeout=5"), ("transfer-encoding", "identity"),
             ("upgrade", "foo"), ("proxy-connection", "keep-alive"),
             ("X-Mixed-Case", "yes"), ("content-length", "5")]


# ---- WSGI -------------------------------------------------------------------

def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    q = _q(environ.get("QUERY_STRING", ""))
    inp = environ["wsgi.input"]

    def read_all():
        parts = []
        while True:
            b = inp.read(8192)
            if not b:
                return b"".join(parts)
            parts.append(b)

    if path == "/":
        read_all()
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "6")])
        return [b"hello\n"]
    if path == "/info":
        read_all()
        body = json.dumps({
            "interface": "wsgi", "version": environ["SERVER_PROTOCOL"],
            "method": environ["REQUEST_METHOD"], "path": path,
            "query": environ.get("QUERY_STRING", ""), "scheme": environ["wsgi.url_scheme"],
            "host": environ.get("HTTP_HOST"), "cookie": environ.get("HTTP_COOKIE"),
            "root_path": environ.get("SCRIPT_NAME", ""),
            "headers": [[k[5:].lower().replace("_", "-"), v] for k, v in environ.items()
                        if k.startswith("HTTP_")],
            "environ_keys": sorted(k for k in environ if k.isupper()),
        }).encode()
        start_response("200 OK", [("content-type", "application/json"),
                                  ("content-length", str(len(body)))])
        return [body]
    if path in ("/echo", "/echo_iter"):
        body = read_all()
        start_response("200 OK", [("content-type", "application/octet-stream"),
                                  ("content-length", str(len(body)))])
        return [body]
    if path == "/digest":
        h, n = hashlib.sha256(), 0
        while True:
            b = inp.read(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"length": n, "sha256": h.hexdigest()}).encode()]
    if path == "/big":
        n = int(q.get("n", 1 << 20))
        start_response("200 OK", [("content-type", "application/octet-stream"),
                                  ("content-length", str(n))])
        return [pattern(n)]
    if path == "/conn_hdrs":
        start_response("200 OK", CONN_HDRS)
        return [b"hello"]
    if path == "/status":
        start_response(f"{q['code']} X", [("x-status", q["code"])])
        return [b""]
    if path == "/slow":
        read_all()
        time.sleep(float(q.get("t", 1)))
        n = int(q.get("n", 9))
        start_response("200 OK", [("content-type", "application/octet-stream"),
                                  ("content-length", str(n))])
        return [pattern(n)]
    if path == "/file":
        f = open(q["path"], "rb")
        start_response("200 OK", [("content-type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/conc":
        read_all()
        _enter()
        try:
            time.sleep(float(q.get("t", 0.5)))
        finally:
            m = _leave()
        start_response("200 OK", [("x-max-concurrency", str(m)), ("content-length", "2")])
        return [b"ok"]
    start_response("404 Not Found", [("content-type", "text/plain")])
    return [b"not found"]


# ---- ASGI -------------------------------------------------------------------

async def _start(send, status, headers, trailers=False):
    msg = {"type": "http.response.start", "status": status,
           "headers": [(k.encode(), v.encode()) for k, v in headers]}
    if trailers:
        msg["trailers"] = True
    await send(msg)


async def _body(send, body=b"", more=False):
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _read_all(receive):
    parts = []
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        parts.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(parts)


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):       # Granian: path keeps the prefix
        path = path[len(root):]
    q = _q(scope["query_string"].decode("latin-1"))
    if path == "/":
        await _read_all(receive)
        await _start(send, 200, [("content-type", "text/plain"), ("content-length", "6")])
        await _body(send, b"hello\n")
    elif path == "/info":
        await _read_all(receive)
        hdrs = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        body = json.dumps({
            "interface": "asgi", "version": scope["http_version"], "method": scope["method"],
            "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
            "scheme": scope["scheme"], "root_path": scope.get("root_path", ""),
            "host": next((v for k, v in hdrs if k == "host"), None),
            "cookie": [v for k, v in hdrs if k == "cookie"], "headers": hdrs,
            "extensions": sorted(scope.get("extensions") or {}),
        }).encode()
        await _start(send, 200, [("content-type", "application/json"),
                                 ("content-length", str(len(body)))])
        await _body(send, body)
    elif path in ("/echo", "/echo_iter"):
        # streamed both ways: each chunk received is sent on at once
        await _start(send, 200, [("content-type", "application/octet-stream")])
        while True:
            msg = await receive()
            assert msg["type"] == "http.request", msg
            more = msg.get("more_body", False)
            if msg.get("body") or not more:
                await _body(send, msg.get("body", b""), more)
            if not more:
                break
    elif path == "/digest":
        h, n = hashlib.sha256(), 0
        while True:
            msg = await receive()
            h.update(msg.get("body", b""))
            n += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await _start(send, 200, [("content-type", "application/json")])
        await _body(send, json.dumps({"length": n, "sha256": h.hexdigest()}).encode())
    elif path == "/big":
        n = int(q.get("n", 1 << 20))
        await _start(send, 200, [("content-type", "application/octet-stream"),
                                 ("content-length", str(n))])
        data, step = pattern(n), 1 << 18
        for i in range(0, n, step):
            await _body(send, data[i:i + step], i + step < n)
        if n == 0:
            await _body(send)
    elif path == "/conn_hdrs":
        await _start(send, 200, CONN_HDRS)
        await _body(send, b"hello")
    elif path == "/status":
        await _start(send, int(q["code"]), [("x-status", q["code"])])
        await _body(send)
    elif path == "/slow":
        await _read_all(receive)
        await asyncio.sleep(float(q.get("t", 1)))
        n = int(q.get("n", 9))
        await _start(send, 200, [("content-type", "application/octet-stream"),
                                 ("content-length", str(n))])
        await _body(send, pattern(n))
    elif path == "/trailers":
        await _read_all(receive)
        await _start(send, 200, [("content-type", "text/plain")], trailers=True)
        await _body(send, b"data", more=True)
        await _body(send, b"more")
        await send({"type": "http.response.trailers",
                    "headers": [(b"x-checksum", b"abc123"), (b"x-count", b"2")],
                    "more_trailers": False})
    elif path == "/file":
        await _start(send, 200, [("content-type", "application/octet-stream")])
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif path == "/conc":
        await _read_all(receive)
        _enter()
        try:
            await asyncio.sleep(float(q.get("t", 0.5)))
        finally:
            m = _leave()
        await _start(send, 200, [("x-max-concurrency", str(m)), ("content-length", "2")])
        await _body(send, b"ok")
    else:
        await _start(send, 404, [("content-type", "text/plain")])
        await _body(send, b"not found")


# ---- RSGI -------------------------------------------------------------------

async def rsgi(scope, proto):
    path = scope.path
    q = _q(scope.query_string)
    if path == "/":
        await proto()
        proto.response_bytes(200, [("content-type", "text/plain")], b"hello\n")
    elif path == "/info":
        await proto()
        h = scope.headers
        body = json.dumps({
            "interface": "rsgi", "version": scope.http_version, "method": scope.method,
            "path": path, "query": scope.query_string, "scheme": scope.scheme,
            "authority": scope.authority, "host": h.get("host"),
            "cookie": h.get_all("cookie"), "headers": [list(kv) for kv in h.items()],
        })
        proto.response_str(200, [("content-type", "application/json")], body)
    elif path == "/echo":
        body = await proto()
        proto.response_bytes(200, [("content-type", "application/octet-stream")], body)
    elif path == "/echo_iter":
        trx = proto.response_stream(200, [("content-type", "application/octet-stream")])
        async for chunk in proto:
            await trx.send_bytes(chunk)
    elif path == "/digest":
        h, n = hashlib.sha256(), 0
        async for chunk in proto:
            h.update(chunk)
            n += len(chunk)
        proto.response_str(200, [("content-type", "application/json")],
                           json.dumps({"length": n, "sha256": h.hexdigest()}))
    elif path == "/big":
        n = int(q.get("n", 1 << 20))
        proto.response_bytes(200, [("content-type", "application/octet-stream"),
                                   ("content-length", str(n))], pattern(n))
    elif path == "/conn_hdrs":
        proto.response_bytes(200, CONN_HDRS, b"hello")
    elif path == "/status":
        proto.response_empty(int(q["code"]), [("x-status", q["code"])])
    elif path == "/slow":
        await proto()
        await asyncio.sleep(float(q.get("t", 1)))
        n = int(q.get("n", 9))
        proto.response_bytes(200, [("content-type", "application/octet-stream"),
                                   ("content-length", str(n))], pattern(n))
    elif path == "/file":
        proto.response_file(200, [("content-type", "application/octet-stream")], q["path"])
    elif path == "/conc":
        await proto()
        _enter()
        try:
            await asyncio.sleep(float(q.get("t", 0.5)))
        finally:
            m = _leave()
        proto.response_bytes(200, [("x-max-concurrency", str(m))], b"ok")
    else:
        proto.response_bytes(404, [("content-type", "text/plain")], b"not found")
