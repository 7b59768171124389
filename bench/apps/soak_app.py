"""ASGI app for the soak test (bench/soak): small GET, 64 KiB GET, 16 KiB
POST echo, and a WebSocket echo."""

SMALL = b"Hello, World!"            # 13 bytes
BIG = b"x" * 65536


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()                         # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg.get("text"),
                        "bytes": msg.get("bytes")})
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        out, status = body, 200
    elif path == "/big":
        out, status = BIG, 200
    elif path == "/":
        out, status = SMALL, 200
    else:
        out, status = b"not found", 404
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
