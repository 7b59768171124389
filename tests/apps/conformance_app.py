"""Echo apps for tests/test_conformance.py: each answers 200 with a JSON
picture of the request it was given, so that the test can compare it with
what its own reference parser reads in the raw bytes.

    wsgi  (granc --interface wsgi conformance_app:wsgi)
        {"method", "path": PATH_INFO, "query": QUERY_STRING,
         "protocol": SERVER_PROTOCOL,
         "headers": [[key, value], ...] for every HTTP_* key and
                    CONTENT_TYPE / CONTENT_LENGTH, sorted by key,
         "body": the body read from wsgi.input, as latin-1}

    asgi  (granc --interface asgi conformance_app:asgi)
        {"method", "path", "raw_path", "query_string", "http_version",
         "headers": [[name, value], ...] in the order of the scope,
         "body"}; bytes are shown as latin-1 text.

Strings stay latin-1 both ways, so every byte value survives the JSON.
"""
import json


def _reply(obj):
    return json.dumps(obj, sort_keys=True).encode()


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read()
    headers = sorted([k, v] for k, v in environ.items()
                     if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH"))
    out = _reply({
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "protocol": environ["SERVER_PROTOCOL"],
        "headers": headers,
        "body": body.decode("latin-1"),
    })
    start_response("200 OK", [("content-type", "application/json"),
                              ("content-length", str(len(out)))])
    return [out]


def _l1(b):
    return bytes(b).decode("latin-1")


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    out = _reply({
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": _l1(scope.get("raw_path") or b""),
        "query_string": _l1(scope["query_string"]),
        "http_version": scope["http_version"],
        "headers": [[_l1(k), _l1(v)] for k, v in scope["headers"]],
        "body": _l1(body),
    })
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
