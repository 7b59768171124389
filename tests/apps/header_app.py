"""Apps that hand granc one header, trailer or reason phrase carrying the
byte named in the query string (?b=0 for NUL, 10 for LF, ...): granc must
refuse it by one rule wherever it would write it (tests/test_headers.py)."""
import json
import os


def _bad(query):
    b = int(dict(x.split("=", 1) for x in query.split("&") if x).get("b", "65"))
    return b"a" + bytes([b]) + b"b"


def _record(what, err):
    path = os.environ.get("HEADER_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps([what, type(err).__name__, str(err)]) + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return                          # no lifespan: granc goes on without
    v = _bad(scope["query_string"].decode())
    if scope["type"] == "websocket":
        await receive()
        try:
            await send({"type": "websocket.accept", "headers": [(b"x-t", v)]})
        except Exception as e:
            _record("accept", e)
            raise
        await send({"type": "websocket.send", "text": "accepted"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/head":
        try:                            # the head is checked by start or body
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-t", v)]})
            await send({"type": "http.response.body", "body": b"ok"})
        except Exception as e:
            _record("head", e)
            raise
    else:                               # /trailer
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        try:
            await send({"type": "http.response.trailers",
                        "headers": [(b"x-ok", b"1"), (b"x-t", v)], "more_trailers": False})
        except Exception as e:
            _record("trailer", e)
            raise


def wsgi(environ, start_response):
    v = _bad(environ.get("QUERY_STRING", "")).decode("latin-1")
    try:
        if environ["PATH_INFO"] == "/reason":
            start_response("299 R" + v, [("content-type", "text/plain")])
        else:
            start_response("200 OK", [("x-t", v)])
    except Exception as e:
        _record(environ["PATH_INFO"], e)
        raise
    return [b"ok"]
