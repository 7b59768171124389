"""ASGI 64 KiB response for the benchmarks (the "asgi-64k" case)."""

BIG = b"x" * 65536
HEADERS = [(b"content-type", b"application/octet-stream"), (b"content-length", b"65536")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BIG})
