"""Read a request body to its end and answer its length; report how the
read ended (a line per request in $STALL_REPORT) -- for the body-read
timeout tests (test_http.py::test_stalled_body_times_out)."""
import json
import os


def _report(path, how):
    with open(os.environ["STALL_REPORT"], "a") as f:
        f.write(json.dumps([path, how]) + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return                          # no lifespan: granc goes on without
    n = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            _report(scope["path"], "http.disconnect")
            return
        n += len(msg["body"])
        if not msg["more_body"]:
            break
    _report(scope["path"], n)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(n).encode()})


def wsgi(environ, start_response):
    try:
        n = len(environ["wsgi.input"].read())
    except Exception as e:
        _report(environ["PATH_INFO"], type(e).__name__)
        raise
    _report(environ["PATH_INFO"], n)
    start_response("200 OK", [("content-type", "text/plain")])
    return [str(n).encode()]
