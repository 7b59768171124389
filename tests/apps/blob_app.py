"""Big bodies both ways, for tests/test_nginx.py: `app` (ASGI) and `wsgi` (WSGI).

  PUT /upload?path=P     write the body to P in the pieces it arrives in;
                         answer {"bytes", "chunks", "max_chunk"}
  GET /download?total=N&piece=P
                         N bytes: the block(i) pattern (see below), sent in
                         pieces of P bytes (default 1 MiB)
  GET|POST /hello?i=I    {"i", "body", "sockets"}: the socket inodes the
                         worker holds, to see connections being reused
"""
import json
import os
from urllib.parse import parse_qs

MiB = 1 << 20
BASE = bytes(range(256)) * (MiB // 256)


def block(i, size=MiB):
    """Block i of a download: its index, then a fixed pattern."""
    return (i.to_bytes(8, "big") + BASE[8:size])[:size]


def pieces(total, piece):
    """The download's bytes, total of them, in pieces of `piece` bytes."""
    i = sent = 0
    while sent < total:
        b = block(i, min(MiB, total - sent))
        i += 1
        sent += len(b)
        if piece >= len(b):
            yield b
        else:
            for k in range(0, len(b), piece):
                yield b[k:k + piece]


def sockets():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out.append(int(link[8:-1]))
    return sorted(out)


def _query(qs):
    return {k: v[0] for k, v in parse_qs(qs).items()}


# --------------------------------------------------------------------- ASGI

async def _json(send, obj, status=200):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    q = _query(scope["query_string"].decode())
    path = scope["path"]
    if path == "/upload":
        n = chunks = biggest = 0
        with open(q["path"], "wb") as f:
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    raise ConnectionError(f"upload cut short after {n} bytes: {msg}")
                data = msg["body"]
                if data:
                    f.write(data)
                    n += len(data)
                    chunks += 1
                    biggest = max(biggest, len(data))
                if not msg.get("more_body"):
                    break
        await _json(send, {"bytes": n, "chunks": chunks, "max_chunk": biggest})
    elif path == "/download":
        total = int(q["total"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(total).encode())]})
        sent = 0
        for part in pieces(total, int(q.get("piece", MiB))):   # new objects
            sent += len(part)
            await send({"type": "http.response.body", "body": part,
                        "more_body": sent < total})
    elif path == "/hello":
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await _json(send, {"i": q.get("i"), "body": body.decode(), "sockets": sockets()})
    else:
        await _json(send, {"path": path}, 404)


# --------------------------------------------------------------------- WSGI

def _wjson(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("content-type", "application/json"),
                            ("content-length", str(len(body)))])
    return [body]


def wsgi(environ, start_response):
    q = _query(environ["QUERY_STRING"])
    path = environ["PATH_INFO"]
    if path == "/upload":
        inp = environ["wsgi.input"]
        n = chunks = biggest = 0
        with open(q["path"], "wb") as f:
            while True:
                data = inp.read(65536)
                if not data:
                    break
                f.write(data)
                n += len(data)
                chunks += 1
                biggest = max(biggest, len(data))
        return _wjson(start_response, {"bytes": n, "chunks": chunks, "max_chunk": biggest})
    if path == "/download":
        total = int(q["total"])
        start_response("200 OK", [("content-type", "application/octet-stream"),
                                  ("content-length", str(total))])

        return pieces(total, int(q.get("piece", MiB)))
    if path == "/hello":
        body = environ["wsgi.input"].read()
        return _wjson(start_response, {"i": q.get("i"), "body": body.decode(),
                                       "sockets": sockets()})
    return _wjson(start_response, {"path": path}, "404 Not Found")
