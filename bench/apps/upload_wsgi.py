"""WSGI upload sink (the "upload" case): reads the body in 64 KiB chunks,
keeps none of it, and answers with the number of bytes read."""


def app(environ, start_response):
    left = int(environ.get("CONTENT_LENGTH") or 0)
    stream, total = environ["wsgi.input"], 0
    while left > 0:
        chunk = stream.read(min(65536, left))
        if not chunk:
            break
        total += len(chunk)
        left -= len(chunk)
    body = str(total).encode()
    start_response("200 OK", [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
    return [body]
