"""WSGI app for tests/test_smuggling.py: every response says which request
it answers, and never echoes the body (so a smuggled request's marker can
only show up in a response if the smuggled request itself was served).

    ANY /<path>?m=MARKER[&noread=1]
        200 {"method", "path", "m", "len", "peer"}
        len: the body length the app read (0 with noread=1: the body is left
        for granc to drain); peer: REMOTE_ADDR:REMOTE_PORT, which shows
        whether a proxy reused its upstream connection.
"""
import json
from urllib.parse import parse_qs


def app(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    body = b"" if q.get("noread") else environ["wsgi.input"].read()
    out = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "m": q.get("m", [""])[0],
        "len": len(body),
        "peer": f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}",
    }).encode()
    start_response("200 OK", [("content-type", "application/json"),
                              ("content-length", str(len(out)))])
    return [out]
