"""An RSGI 1.6 app (no framework) for test_rsgi.py: one route per protocol
method, and reports of what the app saw.  It is a class with __rsgi__,
__rsgi_init__ and __rsgi_del__, and an ASGI __call__ that must never be
used (RSGI prefers __rsgi__)."""
import asyncio
import hashlib
import json
import os
import sys
from urllib.parse import parse_qs

# granc's granian package, from the source tree (not installed here)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from granian.rsgi import ProtocolClosed, ProtocolError, WebsocketMessageType  # noqa: E402


def q(scope):
    return {k: v[0] for k, v in parse_qs(scope.query_string).items()}


def err(e):
    return f"{type(e).__module__}.{type(e).__name__}:{isinstance(e, RuntimeError)}"


async def info(scope, proto):
    h = scope.headers
    probe = {
        "get": h.get("x-thing"), "get_upper": h.get("X-THING"), "get_default": h.get("nope", "d"),
        "get_none": h.get("nope"), "get_all": h.get_all("x-multi"), "item": h["x-thing"] if "x-thing" in h else None,
        "in": "X-Thing" in h, "not_in": "nope" in h, "len": len(h), "keys": h.keys(),
        "values": h.values(), "items": h.items(), "iter": list(h),
    }
    try:
        h["nope"]
    except KeyError as e:
        probe["keyerror"] = e.args[0]
    proto.response_str(200, [("content-type", "application/json")], json.dumps({
        "proto": scope.proto, "rsgi_version": scope.rsgi_version,
        "http_version": scope.http_version, "server": scope.server, "client": scope.client,
        "scheme": scope.scheme, "method": scope.method, "path": scope.path,
        "query_string": scope.query_string, "authority": scope.authority, "headers": probe,
        "task": asyncio.current_task() is not None,
        "types": [type(scope).__name__, type(proto).__name__, type(h).__name__],
    }))


async def echo(scope, proto):
    body = await proto()
    proto.response_bytes(200, [("content-type", "application/octet-stream")], body)


async def digest(scope, proto):
    """The body streamed in (async for): its size, hash and chunks."""
    h, n, chunks, last = hashlib.sha256(), 0, 0, None
    async for c in proto:
        h.update(c)
        n += len(c)
        chunks += 1
        last = c
    proto.response_str(200, [], json.dumps({"length": n, "sha256": h.hexdigest(),
                                            "chunks": chunks, "last": last.hex()}))


async def echo_stream(scope, proto):
    trx = proto.response_stream(200, [("content-type", "application/octet-stream")])
    async for c in proto:
        await trx.send_bytes(c)


async def stream(scope, proto):
    n, size = int(q(scope).get("n", 3)), int(q(scope).get("size", 1))
    trx = proto.response_stream(200, [("content-type", "text/plain")])
    for i in range(n):
        if i % 2:
            await trx.send_str(str(i % 10) * size)
        else:
            await trx.send_bytes(str(i % 10).encode() * size)


async def responses(scope, proto):
    kind = q(scope)["kind"]
    if kind == "empty":
        proto.response_empty(204, [("x-kind", "empty")])
    elif kind == "empty_default":
        proto.response_empty()
    elif kind == "str":
        proto.response_str(201, [("content-type", "text/plain; charset=utf-8")], "héllo ☃")
    elif kind == "bytes_kw":
        proto.response_bytes(status=202, headers=[("x-a", "1"), ("x-a", "2")], body=b"kw")
    elif kind == "bytearray":
        proto.response_bytes(200, [], bytearray(b"mutable"))
    elif kind == "twice":
        proto.response_str(200, [], "first")
        proto.response_str(500, [], "second")          # ignored, as in Granian
        try:
            proto.response_stream(200, [])
        except ProtocolError as e:
            print("second stream:", err(e), flush=True)
    elif kind == "bad_status":
        try:
            proto.response_str(42, [], "x")
        except ValueError as e:
            proto.response_str(200, [], "ValueError: " + str(e))
    elif kind == "bad_header":
        try:
            proto.response_str(200, [("bad name", "x")], "x")
        except ValueError:
            proto.response_str(200, [], "refused")


async def body_twice(scope, proto):
    out = []
    await proto()
    for f in (lambda: proto(), lambda: proto.__aiter__()):
        try:
            f()
        except ProtocolError as e:
            out.append(err(e))
    proto.response_str(200, [], json.dumps(out))


async def file(scope, proto):
    p = q(scope)
    path = p["path"]
    if "start" in p:
        try:
            proto.response_file_range(206, [("content-type", "application/octet-stream")], path,
                                      int(p["start"]), int(p["end"]))
        except ValueError as e:
            proto.response_str(416, [("x-error", str(e))], "")
    else:
        proto.response_file(200, [("content-type", "application/octet-stream")], path)


async def disconnect(scope, proto):
    """Streams until the client leaves; reports what client_disconnect and
    send_bytes said."""
    report = q(scope)["report"]
    seen = []
    trx = proto.response_stream(200, [])

    async def watch():
        await proto.client_disconnect()
        seen.append("disconnect")
    w = asyncio.ensure_future(watch())
    try:
        for _ in range(1000):
            await trx.send_bytes(b"x" * 1000)
            await asyncio.sleep(0.01)
    except ProtocolClosed as e:
        seen.append("send:" + err(e))
    await asyncio.wait_for(w, 5)
    with open(report, "w") as f:
        json.dump(seen, f)


async def backpressure(scope, proto):
    """Sends 1 MiB pieces to a client that does not read: a send_bytes
    that does not finish within 1 s means the sends wait (backpressure)."""
    report = q(scope)["report"]
    trx = proto.response_stream(200, [])
    piece, done = b"z" * (1 << 20), 0
    try:
        for _ in range(256):
            await asyncio.wait_for(trx.send_bytes(piece), 1)
            done += 1
    except asyncio.TimeoutError:
        pass
    with open(report, "w") as f:
        f.write(str(done))


async def cancel_self(scope, proto):
    asyncio.current_task().cancel()
    await asyncio.sleep(0)


async def err_app(scope, proto):
    raise RuntimeError("boom from the rsgi app")


async def err_mid(scope, proto):
    trx = proto.response_stream(200, [])
    await trx.send_bytes(b"first")
    raise RuntimeError("boom mid-stream")


async def noresp(scope, proto):
    return None


async def hold(scope, proto):
    """Reads nothing for t seconds, then the whole body."""
    await asyncio.sleep(float(q(scope)["t"]))
    body = await proto()
    proto.response_str(200, [], str(len(body)))


async def slow(scope, proto):
    await asyncio.sleep(float(q(scope).get("t", 1)))
    proto.response_str(200, [], "slow done")


# ---- websockets -------------------------------------------------------------

async def ws_echo(scope, proto):
    trx = await proto.accept()
    while True:
        m = await trx.receive()
        if m.kind == WebsocketMessageType.close:
            break
        if m.kind == WebsocketMessageType.bytes:
            await trx.send_bytes(m.data)
        else:
            await trx.send_str(m.data)
    proto.close()


async def ws_info(scope, proto):
    trx = await proto.accept()
    await trx.send_str(json.dumps({
        "proto": scope.proto, "rsgi_version": scope.rsgi_version,
        "http_version": scope.http_version, "scheme": scope.scheme, "method": scope.method,
        "path": scope.path, "query_string": scope.query_string, "authority": scope.authority,
        "host": scope.headers.get("host"), "types": [type(proto).__name__, type(trx).__name__],
    }))
    m = await trx.receive()
    proto.close()
    assert m.kind == 0


async def ws_report(scope, proto):
    """Echoes until the client closes; then reports what receive() and
    send_str said afterwards."""
    report = q(scope)["report"]
    trx = await proto.accept()
    seen = []
    while True:
        m = await trx.receive()
        seen.append([int(m.kind), m.data.hex() if isinstance(m.data, bytes) else m.data])
        if m.kind == 0:
            break
    for f in (trx.receive, lambda: trx.send_str("late")):
        try:
            await f()
        except (ProtocolClosed, ProtocolError) as e:
            seen.append(err(e))
    with open(report, "w") as f:
        json.dump(seen, f)


async def ws_reject(scope, proto):
    s = q(scope).get("status")
    if s:
        proto.close(int(s))
    else:
        proto.close()


async def ws_noaccept(scope, proto):
    return None


async def ws_close_code(scope, proto):
    trx = await proto.accept()
    await trx.send_str("bye")
    proto.close(int(q(scope)["code"]))
    try:
        await trx.send_str("after close")
    except ProtocolError as e:
        print("send after close:", err(e), flush=True)


async def ws_accept_twice(scope, proto):
    trx = await proto.accept()
    try:
        await proto.accept()
    except ProtocolError as e:
        await trx.send_str(err(e))
    proto.close()


async def ws_push(scope, proto):
    report = q(scope)["report"]
    trx = await proto.accept()
    try:
        while True:
            await trx.send_str("ping")
    except ProtocolClosed as e:
        with open(report, "w") as f:
            f.write(err(e))
    proto.close()


async def ws_raise(scope, proto):
    await proto.accept()
    raise RuntimeError("boom in a websocket")


ROUTES = {
    "/info": info, "/echo": echo, "/digest": digest, "/echos": echo_stream, "/stream": stream,
    "/resp": responses, "/body_twice": body_twice, "/file": file, "/disconnect": disconnect,
    "/backpressure": backpressure, "/err_app": err_app, "/cancel_self": cancel_self, "/err_mid": err_mid,
    "/noresp": noresp, "/slow": slow, "/hold": hold,
    "/ws_echo": ws_echo, "/ws_info": ws_info, "/ws_report": ws_report, "/ws_reject": ws_reject,
    "/ws_noaccept": ws_noaccept, "/ws_close_code": ws_close_code,
    "/ws_accept_twice": ws_accept_twice, "/ws_push": ws_push, "/ws_raise": ws_raise,
}


class App:
    def __rsgi_init__(self, loop):
        # the loop exists and is not running yet: the app may run it
        loop.run_until_complete(asyncio.sleep(0))
        print(f"rsgi_init: running={loop.is_running()}", flush=True)

    def __rsgi_del__(self, loop):
        print(f"rsgi_del: running={loop.is_running()} closed={loop.is_closed()}", flush=True)

    async def __call__(self, scope, receive, send):       # ASGI: never used
        raise RuntimeError("the ASGI entry point was called")

    async def __rsgi__(self, scope, proto):
        route = ROUTES.get(scope.path)
        if route is None:
            proto.response_str(404, [], "no route " + scope.path)
            return
        await route(scope, proto)


app = App()


async def plain(scope, proto):
    """A bare coroutine function: no hooks, no __rsgi__."""
    proto.response_str(200, [], f"plain {scope.proto} {scope.path}")
