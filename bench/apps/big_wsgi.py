"""WSGI 64 KiB response for the benchmarks (the "wsgi-64k" case)."""

BIG = b"x" * 65536


def app(environ, start_response):
    start_response("200 OK", [("content-type", "application/octet-stream"),
                              ("content-length", str(len(BIG)))])
    return [BIG]
