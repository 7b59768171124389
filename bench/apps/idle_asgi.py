"""ASGI hello world that takes the (empty) request body first, for the
"idle" case: hypercorn 0.13 closes a keep-alive connection whose request
the app never received(), and an idle connection must stay open."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
