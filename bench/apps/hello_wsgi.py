"""Hello world for the benchmarks (13 bytes, like Granian's "get")."""


def app(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
    return [body]
