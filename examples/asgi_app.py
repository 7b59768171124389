"""A plain ASGI 3 app, no framework: lifespan, HTTP, server-sent events and
a WebSocket, written against the raw ASGI messages.

Run it from the repository root:

    ./granc --interface asgi examples/asgi_app.py

granc calls `app(scope, receive, send)` once for the lifespan of each
worker, once per HTTP request and once per WebSocket connection.
scope["type"] says which.

Routes:
    GET /     plain text
    GET /sse  a few server-sent events, then the response ends
    WS  /ws   echoes text and binary messages; "bye" closes the connection
"""
import asyncio
import json

# Filled in at startup, cleared at shutdown: a stand-in for a database pool.
STATE = {}


async def lifespan(scope, receive, send):
    # granc sends "lifespan.startup" before it serves any request, and
    # "lifespan.shutdown" when the worker stops (SIGINT/SIGTERM).
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            STATE["ready"] = True
            print("asgi_app: startup complete", flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            STATE.clear()
            print("asgi_app: shutdown complete", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def index(scope, receive, send):
    body = b"Hello from a plain ASGI app! ready=%s\n" % str(STATE.get("ready", False)).encode()
    # A response is one "http.response.start" then one or more
    # "http.response.body" messages; header names and values are bytes.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def sse(scope, receive, send):
    # Server-sent events: a long-lived text/event-stream response.  Each
    # body message with more_body=True reaches the browser at once.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]})
    for i in range(1, 4):
        event = f"id: {i}\nevent: tick\ndata: {json.dumps({'n': i})}\n\n"
        await send({"type": "http.response.body", "body": event.encode(),
                    "more_body": True})
        await asyncio.sleep(0.1)
    # more_body=False (the default) ends the response.
    await send({"type": "http.response.body", "body": b""})


async def websocket_echo(scope, receive, send):
    # The first message is always "websocket.connect": accept (or close to
    # refuse with a 403).
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return  # the client went away or closed first
        # A "websocket.receive" carries either "text" (str) or "bytes".
        text = message.get("text")
        if text == "bye":
            await send({"type": "websocket.send", "text": "bye!"})
            await send({"type": "websocket.close", "code": 1000})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def not_found(scope, receive, send):
    if scope["type"] == "websocket":
        # Closing before accepting refuses the handshake (HTTP 403).
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"not found\n"})


ROUTES = {("http", "/"): index, ("http", "/sse"): sse,
          ("websocket", "/ws"): websocket_echo}


async def app(scope, receive, send):
    """The ASGI 3 entry point: dispatch on the scope type and path."""
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    handler = ROUTES.get((scope["type"], scope["path"]), not_found)
    await handler(scope, receive, send)
