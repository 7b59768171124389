"""The ASGI app the tests run, one route per behaviour."""
import asyncio
import hashlib
import json
import os
import sys
from urllib.parse import unquote

import sniffio


async def _json(send, obj, status=200):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_all(receive):
    body = b""
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        body += msg["body"]
        if not msg.get("more_body"):
            return body


async def info(scope, receive, send):
    s = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path", "query_string")}
    s["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    s["raw_path"] = scope["raw_path"].decode("latin-1")
    s["query_string"] = scope["query_string"].decode("latin-1")
    s["state"] = {k: str(v) for k, v in scope.get("state", {}).items()}
    s["task"] = asyncio.current_task() is not None
    s["sniffio"] = sniffio.current_async_library()
    s["loop"] = type(asyncio.get_running_loop()).__module__
    s["pid"] = os.getpid()
    await _json(send, s)


async def echo(scope, receive, send):
    body = await _read_all(receive)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": body})


async def digest(scope, receive, send):
    h, n, chunks = hashlib.sha256(), 0, 0
    while True:
        msg = await receive()
        h.update(msg["body"])
        n += len(msg["body"])
        chunks += 1
        if not msg.get("more_body"):
            break
    await _json(send, {"length": n, "sha256": h.hexdigest(), "chunks": chunks})


async def stream(scope, receive, send):
    q = dict(x.split("=") for x in scope["query_string"].decode().split("&") if x)
    n, size = int(q.get("n", 5)), int(q.get("size", 10))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for i in range(n):
        await send({"type": "http.response.body", "body": str(i % 10).encode() * size,
                    "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def big(scope, receive, send):
    q = dict(x.split("=") for x in scope["query_string"].decode().split("&") if x)
    total, chunk = int(q.get("total", 1 << 20)), int(q.get("chunk", 1 << 16))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(total).encode())]})
    block = b"x" * chunk
    sent = 0
    while sent < total:
        part = block[:min(chunk, total - sent)]
        sent += len(part)
        await send({"type": "http.response.body", "body": part, "more_body": sent < total})


async def err_app(scope, receive, send):
    raise RuntimeError("boom from the asgi app")


async def err_mid(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    raise RuntimeError("boom mid-stream")


async def err_proto_type(scope, receive, send):
    try:
        await send({"type": "http.nonsense"})
    except RuntimeError as e:
        await _json(send, {"error": str(e)})


async def err_proto_flow(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
    except RuntimeError as e:
        await send({"type": "http.response.body", "body": str(e).encode()})


async def pathsend(scope, receive, send):
    q = dict(x.split("=", 1) for x in scope["query_string"].decode().split("&") if x)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.pathsend", "path": unquote(q["path"])})


async def trailers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"data", "more_body": False})
    await send({"type": "http.response.trailers",
                "headers": [(b"x-checksum", b"abc123")], "more_trailers": False})


async def wait_for(scope, receive, send):
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.05)
    except asyncio.TimeoutError:
        await _json(send, {"timeout": True})


async def disconnect(scope, receive, send):
    """Stream until the client goes; report what the app saw to a file."""
    q = dict(x.split("=", 1) for x in scope["query_string"].decode().split("&") if x)
    report = q["report"]
    await _read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    seen = []
    try:
        for _ in range(2000):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    except OSError:
        seen.append("send:OSError")
    msg = await receive()
    seen.append(msg["type"])
    with open(report, "w") as f:
        json.dump(seen, f)


async def sse(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})


async def noresp(scope, receive, send):
    return


async def cancel_self(scope, receive, send):
    asyncio.current_task().cancel()
    await asyncio.sleep(0)


async def ws_echo(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            path = os.environ.get("WS_REPORT")
            if path:
                with open(path, "w") as f:
                    json.dump(msg, f)
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


async def ws_info(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "chat.v2",
                "headers": [(b"x-extra", b"yes")]})
    s = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    await send({"type": "websocket.send", "text": json.dumps(s)})
    await send({"type": "websocket.close", "code": 1000})


async def ws_reject(scope, receive, send):
    await receive()
    await send({"type": "websocket.close"})


async def ws_noaccept(scope, receive, send):
    return


async def ws_raise_before(scope, receive, send):
    raise RuntimeError("no websocket for you")


async def ws_raise_after(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    raise RuntimeError("broken consumer")


async def ws_deny_custom(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "websocket.http.response.body", "body": b"go away"})


async def ws_close_reason(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4001, "reason": "custom reason"})


async def ws_push(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    for i in range(100):
        await send({"type": "websocket.send", "text": f"msg {i}"})
    await send({"type": "websocket.close", "code": 1000})


ROUTES = {
    "/info": info, "/echo": echo, "/digest": digest, "/stream": stream, "/big": big,
    "/err_app": err_app, "/err_mid": err_mid, "/err_proto/type": err_proto_type,
    "/err_proto/flow": err_proto_flow, "/pathsend": pathsend, "/trailers": trailers,
    "/wait_for": wait_for, "/disconnect": disconnect, "/sse": sse, "/noresp": noresp,
    "/cancel_self": cancel_self, "/ws_echo": ws_echo, "/ws_info": ws_info, "/ws_reject": ws_reject,
    "/ws_noaccept": ws_noaccept, "/ws_raise_before": ws_raise_before,
    "/ws_raise_after": ws_raise_after, "/ws_deny_custom": ws_deny_custom,
    "/ws_close_reason": ws_close_reason, "/ws_push": ws_push,
}

LIFESPAN = {"events": []}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            LIFESPAN["events"].append(msg["type"])
            if msg["type"] == "lifespan.startup":
                scope["state"]["global"] = "test"
                if os.environ.get("LIFESPAN_FAIL"):
                    await send({"type": "lifespan.startup.failed", "message": "nope"})
                    return
                if os.environ.get("LIFESPAN_RAISE"):
                    raise RuntimeError("lifespan not supported here")
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                path = os.environ.get("LIFESPAN_REPORT")
                if path:
                    with open(path, "w") as f:
                        f.write("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    handler = ROUTES.get(scope["path"])
    if handler is None:
        await _json(send, {"path": scope["path"]}, status=404)
        return
    await handler(scope, receive, send)
