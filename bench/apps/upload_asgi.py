"""ASGI upload sink (the "upload" case): takes the body as it arrives
through receive(), keeps none of it, and answers with the number of bytes."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    total = 0
    while True:
        msg = await receive()
        total += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    body = str(total).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
