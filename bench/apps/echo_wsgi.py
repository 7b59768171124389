"""WSGI echo for the benchmarks: the request body back (the "wsgi-echo" case)."""


def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    start_response("200 OK", [("content-type", "application/octet-stream"),
                              ("content-length", str(len(body)))])
    return [body]
