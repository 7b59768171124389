"""WebSockets (RFC 6455) for ASGI apps, with the `websockets` client and raw
sockets for what a polite client never sends."""
import asyncio
import base64
import json
import os
import re
import socket
import signal
import struct

import httpx
import pytest
import websockets

from conftest import read_response

KEY = base64.b64encode(b"0123456789abcdef").decode()


@pytest.fixture
def ws(wsgi_server):
    return wsgi_server("asgi_app:app", interface="asgi")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def url(s, path):
    return f"ws://127.0.0.1:{s.port}{path}"


def test_echo_text_and_bytes(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_echo")) as c:
            await c.send("héllo")
            assert await c.recv() == "héllo"
            await c.send(b"\x00\x01\xff")
            assert await c.recv() == b"\x00\x01\xff"
            await c.send("")
            assert await c.recv() == ""
    run(go())


@pytest.mark.parametrize("first", [b"", ""])
def test_empty_messages_are_empty_not_none(ws, first):
    """An empty message is b"" or "" (ASGI), never None: the first message,
    and one after a message big enough to free the message buffer."""
    async def go():
        async with websockets.connect(url(ws, "/ws_echo"), max_size=None) as c:
            for m in (first, b"x" * 100000, b"", "", b"", b"\x01"):
                await c.send(m)
                assert await c.recv() == m
    run(go())


def test_big_message(ws):
    data = os.urandom(10 * 1024 * 1024)

    async def go():
        async with websockets.connect(url(ws, "/ws_echo"), max_size=None) as c:
            await c.send(data)
            assert await c.recv() == data
    run(go())


def test_fragmented_and_ping_between(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_echo")) as c:
            await c.send(["frag", "men", "ted"])          # three frames, one message
            assert await c.recv() == "fragmented"
            pong = await c.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
    run(go())


def test_scope_subprotocol_and_headers(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_info?x=1"), subprotocols=["chat.v1", "chat.v2"]) as c:
            assert c.subprotocol == "chat.v2"
            assert c.response_headers["x-extra"] == "yes"
            s = json.loads(await c.recv())
            assert s["type"] == "websocket" and s["scheme"] == "ws"
            assert "method" not in s
            assert s["subprotocols"] == ["chat.v1", "chat.v2"]
            assert s["path"] == "/ws_info" and s["http_version"] == "1.1"
            await c.wait_closed()
            assert c.close_code == 1000
    run(go())


@pytest.mark.parametrize("path", ["/ws_reject", "/ws_noaccept", "/ws_raise_before"])
def test_denied_is_403(ws, path):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(url(ws, path)):
                pass
        assert e.value.status_code == 403
    run(go())


def test_custom_denial(ws):
    s = ws.connect()
    s.sendall(("GET /ws_deny_custom HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\n\r\n").encode())
    status, headers, body, _ = read_response(s)
    assert status == 401 and body == b"go away"


def test_close_code_and_reason_from_server(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_close_reason")) as c:
            await c.wait_closed()
            assert c.close_code == 4001 and c.close_reason == "custom reason"
    run(go())


def test_close_code_and_reason_from_client(wsgi_server, tmp_path):
    report = tmp_path / "ws.json"
    s = wsgi_server("asgi_app:app", interface="asgi", env={"WS_REPORT": str(report)})

    async def go():
        async with websockets.connect(url(s, "/ws_echo")) as c:
            await c.close(code=4321, reason="bye now")
            assert c.close_code == 4321               # echoed back
    run(go())
    for _ in range(100):
        if report.exists():
            break
        asyncio.run(asyncio.sleep(0.05))
    assert json.loads(report.read_text()) == {"type": "websocket.disconnect", "code": 4321,
                                              "reason": "bye now"}


def test_exception_after_accept_closes_1011(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_raise_after")) as c:
            await c.wait_closed()
            assert c.close_code == 1011
    run(go())
    assert "broken consumer" in ws.log()


def test_server_push(ws):
    async def go():
        async with websockets.connect(url(ws, "/ws_push")) as c:
            got = [await c.recv() for _ in range(100)]
            assert got == [f"msg {i}" for i in range(100)]
    run(go())


# ---- raw frames ---------------------------------------------------------------

def handshake(s, path="/ws_echo"):
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % (path, KEY)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    # RFC 6455 1.3: the accept value for this key
    import hashlib
    want = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                         .encode()).digest())
    assert b"sec-websocket-accept: " + want + b"\r\n" in head


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    m = b"\x11\x22\x33\x44"
    return head + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))


def read_frame(s):
    def need(n):
        b = b""
        while len(b) < n:
            x = s.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    return b0 & 0x0F, need(n)


def close_code_of(s):
    op, payload = read_frame(s)
    while op != 8:
        op, payload = read_frame(s)
    return struct.unpack("!H", payload[:2])[0]


@pytest.mark.parametrize("bad,code", [
    (frame(1, b"\xff\xfe"), 1007),                        # invalid UTF-8
    (frame(1, "é".encode()[:1]), 1007),                   # truncated sequence
    (frame(1, b"hi", mask=False), 1002),                  # unmasked client frame
    (frame(1, b"hi", rsv=0x40), 1002),                    # RSV1 without an extension
    (frame(3, b"x"), 1002),                               # reserved opcode
    (frame(9, b"p", fin=False), 1002),                    # fragmented control frame
    (frame(0, b"x"), 1002),                               # continuation without a start
    (frame(1, b"a", fin=False) + frame(1, b"b"), 1002),   # new message inside one
    (frame(8, b"\x03\xe8" + b"\xff"), 1002),              # close reason not UTF-8
    (frame(8, b"\x03\xed"), 1002),                        # close code 1005 is reserved
])
def test_protocol_errors_close(ws, bad, code):
    s = ws.connect()
    handshake(s)
    s.sendall(bad)
    assert close_code_of(s) == code
    s.close()
    assert httpx.get(ws.url + "/info").status_code == 200


def test_message_too_big_1009(wsgi_server):
    s = wsgi_server("asgi_app:app", "--ws-max-message-size", "1000", interface="asgi")
    sock = s.connect()
    handshake(sock)
    sock.sendall(frame(2, b"x" * 600, fin=False) + frame(0, b"y" * 600))
    assert close_code_of(sock) == 1009


def test_ping_answered_and_close_without_code(ws):
    s = ws.connect()
    handshake(s)
    s.sendall(frame(1, b"ab", fin=False) + frame(9, b"ping!") + frame(0, b"cd"))
    assert read_frame(s) == (10, b"ping!")                 # pong, between fragments
    assert read_frame(s) == (1, b"abcd")
    s.sendall(frame(8))                                    # close, no code
    op, payload = read_frame(s)
    assert op == 8 and payload == b""                      # echoed: no code either
    assert s.recv(10) == b""                               # then the server closes


def test_bad_handshakes_400(ws):
    for extra in ["Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: %s\r\n" % KEY,
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n",
                  "Sec-WebSocket-Version: 13\r\n"]:
        s = ws.connect()
        s.sendall(("GET /ws_echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\n" + extra + "\r\n").encode())
        status, _, body, _ = read_response(s)
        assert status == 400 and body.startswith(b"websocket:")


def test_no_ws_serves_plain_http(wsgi_server):
    s = wsgi_server("asgi_app:app", "--no-ws", interface="asgi")
    sock = s.connect()
    sock.sendall(("GET /info HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % KEY).encode())
    status, _, body, _ = read_response(sock)
    assert status == 200 and json.loads(body)["type"] == "http"


@pytest.mark.slow
def test_thousand_connections(ws):
    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    (worker,) = ws.worker_pids()
    before = rss_kib(worker)

    async def go():
        conns = await asyncio.gather(*[websockets.connect(url(ws, "/ws_echo")) for _ in range(1000)])
        for i, c in enumerate(conns):
            await c.send(f"m{i}")
        got = await asyncio.gather(*[c.recv() for c in conns])
        assert got == [f"m{i}" for i in range(1000)]
        during = rss_kib(worker)
        await asyncio.gather(*[c.close() for c in conns])
        return during
    during = run(go())
    print(f"RSS with 1000 websockets: {before} KiB idle -> {during} KiB")
    assert during - before < 64 * 1024


def test_starlette_websocket_endpoint(wsgi_server):
    s = wsgi_server("star_ws:app", interface="asgi")

    async def go():
        async with websockets.connect(url(s, "/chat")) as c:
            await c.send(json.dumps({"n": 1}))
            assert json.loads(await c.recv()) == {"echo": {"n": 1}, "path": "/chat"}
    run(go())


def test_sigterm_closes_open_websockets_1001(wsgi_server):
    s = wsgi_server("asgi_app:app", interface="asgi")

    async def go():
        async with websockets.connect(url(s, "/ws_echo")) as c:
            await c.send("hi")
            assert await c.recv() == "hi"
            s.proc.send_signal(signal.SIGTERM)
            await c.wait_closed()
            assert c.close_code == 1001
    run(go())
    assert s.proc.wait(20) == 0
