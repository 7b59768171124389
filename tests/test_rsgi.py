"""RSGI 1.6 as Granian serves it (its default interface), against the real
binary: tests/apps/rsgi_app.py over real sockets."""
import asyncio
import hashlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time

import httpx
import pytest
import websockets

from conftest import APPS, BIN, Server, read_response


@pytest.fixture
def rsgi(wsgi_server):
    return wsgi_server("rsgi_app:app", interface="rsgi")


def get(s, path, **kw):
    return httpx.get(s.url + path, timeout=30, **kw)


def wait_file(p, timeout=15):
    deadline = time.time() + timeout
    while not (p.exists() and p.stat().st_size) and time.time() < deadline:
        time.sleep(0.05)
    return p.read_text()


def wait_log(s, text, timeout=10):
    deadline = time.time() + timeout
    while text not in s.log() and time.time() < deadline:
        time.sleep(0.05)
    return s.log()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def wsurl(s, path):
    return f"ws://127.0.0.1:{s.port}{path}"


# ---- start-up: the default interface, hooks ---------------------------------

class DefaultServer(Server):
    """granc with no --interface at all."""
    def cmd(self):
        return [c for c in super().cmd() if c not in ("--interface", self.interface)]


def test_default_interface_is_rsgi():
    s = DefaultServer("rsgi_app:app", interface="rsgi")
    with s:
        assert "--interface" not in s.cmd()
        r = get(s, "/info")
        assert r.status_code == 200 and r.json()["proto"] == "http"


def test_hooks_and_rsgi_method(wsgi_server):
    s = wsgi_server("rsgi_app:app", interface="rsgi")
    assert get(s, "/info").json()["task"] is True       # __rsgi__, in a task
    assert "rsgi_init: running=False" in s.log()
    assert s.stop() == 0
    assert "rsgi_del: running=False closed=False" in s.log()
    assert "ASGI entry point" not in s.log()


def test_plain_coroutine_app(wsgi_server):
    s = wsgi_server("rsgi_app:plain", interface="rsgi")
    assert get(s, "/x").text == "plain http /x"


def test_init_hook_failing_stops_the_worker(tmp_path):
    (tmp_path / "badinit.py").write_text(
        "class A:\n    def __rsgi_init__(self, loop):\n        raise RuntimeError('no init')\n"
        "    async def __rsgi__(self, scope, proto):\n        proto.response_empty()\napp = A()\n")
    r = subprocess.run([BIN, "--port", "0", "badinit:app"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "no init" in r.stdout


# ---- the scope ----------------------------------------------------------------

def test_scope(rsgi):
    r = get(rsgi, "/info?a=1&b=%20", headers=[("X-Thing", "V"), ("X-Multi", "1"), ("x-multi", "2")])
    s = r.json()
    assert s["proto"] == "http" and s["rsgi_version"] == "1.6" and s["http_version"] == "1.1"
    assert s["server"] == f"127.0.0.1:{rsgi.port}"
    ip, port = s["client"].rsplit(":", 1)
    assert ip == "127.0.0.1" and 0 < int(port) < 65536
    assert s["scheme"] == "http" and s["method"] == "GET" and s["path"] == "/info"
    assert s["query_string"] == "a=1&b=%20"                 # raw
    assert s["authority"] is None                           # origin-form on HTTP/1.1
    assert s["types"] == ["RSGIHTTPScope", "RSGIHTTPProtocol", "RSGIHeaders"]
    h = s["headers"]
    assert h["get"] == "V" and h["get_upper"] == "V" and h["item"] == "V"
    assert h["get_default"] == "d" and h["get_none"] is None
    assert h["get_all"] == ["1", "2"]
    assert h["in"] is True and h["not_in"] is False and h["keyerror"] == "nope"
    keys = h["keys"]
    assert keys[0] == "host" and keys.count("x-multi") == 1      # each name once, in order
    assert h["len"] == len(keys) and h["iter"] == keys
    assert ["x-multi", "1"] in h["items"] and ["x-multi", "2"] in h["items"]
    assert len(h["values"]) == len(h["items"]) == len(keys) + 1


def test_scope_http10_absolute_form_and_lossy_path(rsgi):
    sock = rsgi.connect()
    sock.sendall(b"GET http://example.com:81/p%C3%A9t%E9/x?q=%41 HTTP/1.0\r\n\r\n")
    status, _, body, _ = read_response(sock)
    assert status == 404 and body == "no route /pét\ufffd/x".encode()
    sock = rsgi.connect()
    sock.sendall(b"GET http://example.com:81/info?q=%41 HTTP/1.0\r\n\r\n")
    status, _, body, _ = read_response(sock)
    s = json.loads(body)
    assert s["http_version"] == "1" and s["authority"] == "example.com:81"
    assert s["query_string"] == "q=%41"


def test_url_path_prefix_is_ignored(wsgi_server):
    s = wsgi_server("rsgi_app:app", "--url-path-prefix", "/pre", interface="rsgi")
    assert get(s, "/info").json()["path"] == "/info"


def test_uds_addresses(wsgi_server, tmp_path):
    sock = str(tmp_path / "g.sock")
    s = wsgi_server("rsgi_app:app", interface="rsgi", uds=sock)
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock)) as c:
        d = c.get("http://x/info").json()
    assert d["server"] == sock and d["client"] == ""


# ---- the body -----------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 65536, 3 * 1024 * 1024 + 7])
def test_echo_whole_body(rsgi, size):
    data = os.urandom(size)
    r = httpx.post(rsgi.url + "/echo", content=data, timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(size)           # one fixed-length body


def test_echo_chunked_upload(rsgi):
    parts = [os.urandom(70000) for _ in range(20)]
    r = httpx.post(rsgi.url + "/echo", content=iter(parts), timeout=30)
    assert r.content == b"".join(parts)


def test_streamed_upload(rsgi):
    data = b"".join(bytes([i]) * 250_000 for i in range(20))     # 5 MB
    r = httpx.post(rsgi.url + "/digest", content=iter([data[i:i + 100_000] for i in range(0, len(data), 100_000)]),
                   timeout=30)
    d = r.json()
    assert d["length"] == len(data) and d["sha256"] == hashlib.sha256(data).hexdigest()
    assert d["chunks"] > 2 and d["last"] == ""                 # in pieces; Granian ends with b""


def test_streamed_echo_big(rsgi):
    """8 MiB echoed as it streams in.  The client reads while it writes:
    send_bytes waits for it (backpressure), so a client that reads only
    after its upload would stall once the socket buffers are full."""
    data = os.urandom(8 * 1024 * 1024)
    sock = rsgi.connect(60)
    sock.sendall(b"POST /echos HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data))
    t = threading.Thread(target=sock.sendall, args=(data,))
    t.start()
    status, headers, body, _ = read_response(sock)
    t.join()
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_expect_continue_with_stream(rsgi):
    """The head leaves before the body is read: no "100 Continue" may land
    in the response's body."""
    sock = rsgi.connect()
    sock.sendall(b"POST /echos HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    time.sleep(0.3)
    sock.sendall(b"hello")
    status, headers, body, _ = read_response(sock)
    assert status == 200 and body == b"hello"


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_upload_backpressure(rsgi):
    """While the app does not ask for the body, granc stops reading it:
    the client's upload stalls, and the worker does not spin on a socket
    that stays readable."""
    worker = rsgi.worker_pids()[0]
    size = 64 << 20
    sock = rsgi.connect(30)
    sock.sendall(b"POST /hold?t=1.5 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    cpu0 = cpu_seconds(worker)
    sock.setblocking(False)
    sent, chunk, deadline = 0, b"u" * 65536, time.time() + 1
    while time.time() < deadline:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    assert sent < size // 2, sent                   # the upload stalled
    assert cpu_seconds(worker) - cpu0 < 0.5          # no busy loop meanwhile
    sock.setblocking(True)
    rest = size - sent
    while rest:
        rest -= sock.send(chunk[:min(rest, len(chunk))])
    status, _, body, _ = read_response(sock)
    assert status == 200 and body == str(size).encode()


def test_body_read_twice_is_a_protocol_error(rsgi):
    r = httpx.post(rsgi.url + "/body_twice", content=b"abc")
    assert r.json() == ["granian._granian.RSGIProtocolError:True"] * 2


# ---- responses ----------------------------------------------------------------

def test_response_kinds(rsgi):
    r = get(rsgi, "/resp?kind=empty")
    assert r.status_code == 204 and r.headers["x-kind"] == "empty" and r.content == b""
    r = get(rsgi, "/resp?kind=empty_default")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
    r = get(rsgi, "/resp?kind=str")
    assert r.status_code == 201 and r.content == "héllo ☃".encode()
    assert r.headers["content-length"] == str(len("héllo ☃".encode()))
    r = get(rsgi, "/resp?kind=bytes_kw")
    assert r.status_code == 202 and r.content == b"kw" and r.headers.get_list("x-a") == ["1", "2"]
    assert get(rsgi, "/resp?kind=bytearray").content == b"mutable"


def test_second_response_ignored(rsgi):
    r = get(rsgi, "/resp?kind=twice")
    assert r.status_code == 200 and r.text == "first"
    assert "second stream: granian._granian.RSGIProtocolError:True" in wait_log(rsgi, "second stream")


def test_invalid_status_and_header_raise(rsgi):
    r = get(rsgi, "/resp?kind=bad_status")
    assert r.text.startswith("ValueError: invalid HTTP status 42")
    assert get(rsgi, "/resp?kind=bad_header").text == "refused"
    assert get(rsgi, "/info").status_code == 200                 # the worker lives on


def test_stream_response(rsgi):
    sock = rsgi.connect()
    sock.sendall(b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body, _ = read_response(sock)
    assert headers["transfer-encoding"] == "chunked" and body == b"000111222333"
    sock.sendall(b"GET /stream?n=2&size=2 HTTP/1.0\r\n\r\n")     # HTTP/1.0: until close
    status, headers, body, _ = read_response(sock)
    assert "transfer-encoding" not in headers and body == b"0011"


def test_response_file(rsgi, tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(2_500_000)
    p.write_bytes(data)
    r = get(rsgi, "/file", params={"path": str(p)})
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data))
    r = get(rsgi, "/file", params={"path": str(tmp_path / "missing")})
    assert r.status_code == 404 and r.text == "Not found"
    assert get(rsgi, "/file", params={"path": str(tmp_path)}).status_code == 404   # a directory


@pytest.mark.parametrize("rng", [(0, 10), (3, 8), (5, 6), (9, 10), (4, 100)])
def test_response_file_range(rsgi, tmp_path, rng):
    p = tmp_path / "r.txt"
    p.write_text("0123456789")
    start, end = rng
    r = get(rsgi, "/file", params={"path": str(p), "start": start, "end": end})
    assert r.status_code == 206 and r.text == "0123456789"[start:end]       # [start, end)
    assert r.headers["content-length"] == str(len("0123456789"[start:end]))


@pytest.mark.parametrize("rng", [(8, 4), (5, 5)])
def test_response_file_range_empty_is_valueerror(rsgi, tmp_path, rng):
    p = tmp_path / "r.txt"
    p.write_text("0123456789")
    r = get(rsgi, "/file", params={"path": str(p), "start": rng[0], "end": rng[1]})
    assert r.status_code == 416 and r.headers["x-error"] == "Invalid range"


# ---- disconnects, backpressure, errors --------------------------------------------

def test_client_disconnect(rsgi, tmp_path):
    report = tmp_path / "seen.json"
    s = rsgi.connect()
    s.sendall(b"GET /disconnect?report=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(report).encode())
    s.recv(65536)
    s.close()                                                   # mid-stream
    seen = json.loads(wait_file(report))
    assert seen == ["disconnect", "send:granian._granian.RSGIProtocolClosed:True"]
    assert get(rsgi, "/info").status_code == 200


def test_send_bytes_waits_above_high_water_mark(rsgi, tmp_path):
    report = tmp_path / "done"
    s = rsgi.connect()
    s.sendall(b"GET /backpressure?report=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(report).encode())
    done = int(wait_file(report, 30))                          # the client reads nothing
    assert done < 64, done                                      # Granian: all 256 would queue
    s.close()


def test_exception_gives_500(rsgi):
    r = get(rsgi, "/err_app")
    assert r.status_code == 500 and r.content == b""
    assert get(rsgi, "/info").status_code == 200
    log = rsgi.log()
    assert "Application callable raised an exception" in log
    assert "RuntimeError: boom from the rsgi app" in log


def test_cancelled_task_gives_500(rsgi):
    assert get(rsgi, "/cancel_self").status_code == 500
    assert "the application task was cancelled" in rsgi.log()
    assert get(rsgi, "/info").status_code == 200


def test_no_response_is_500(rsgi):
    assert get(rsgi, "/noresp").status_code == 500
    assert "RSGI callable returned without a response" in rsgi.log()


def test_exception_mid_stream_aborts(rsgi):
    s = rsgi.connect()
    s.sendall(b"GET /err_mid HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    assert b"first" in data and not data.endswith(b"0\r\n\r\n")   # never a clean end


def test_keepalive_and_pipelining(rsgi):
    s = rsgi.connect()
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
              b"GET /stream?n=2&size=1 HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /resp?kind=str HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, b1, rest = read_response(s)
    _, _, b2, rest = read_response(s, rest)
    _, _, b3, _ = read_response(s, rest)
    assert (b1, b2, b3) == (b"abc", b"01", "héllo ☃".encode())


def test_access_log(wsgi_server):
    s = wsgi_server("rsgi_app:app", "--access-log", interface="rsgi")
    get(s, "/resp?kind=empty")
    get(s, "/err_app")
    deadline = time.time() + 5
    while ("/err_app" not in s.log()) and time.time() < deadline:
        time.sleep(0.05)
    log = s.log()
    assert '"GET /resp HTTP/1.1" 204' in log and '"GET /err_app HTTP/1.1" 500' in log


def test_sigterm_finishes_inflight(wsgi_server):
    s = wsgi_server("rsgi_app:app", interface="rsgi")
    sock = s.connect()
    sock.sendall(b"GET /slow?t=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    status, _, body, _ = read_response(sock)
    assert status == 200 and body == b"slow done"
    assert s.proc.wait(20) == 0


# ---- websockets ----------------------------------------------------------------

def test_ws_echo(rsgi):
    async def go():
        async with websockets.connect(wsurl(rsgi, "/ws_echo"), max_size=None) as c:
            for m in ("héllo", b"\x00\x01\xff", "", b"", os.urandom(3 << 20)):
                await c.send(m)
                assert await c.recv() == m
            await c.send(["frag", "men", "ted"])
            assert await c.recv() == "fragmented"
            await asyncio.wait_for(await c.ping(b"hi"), 5)
    run(go())


def test_ws_scope(rsgi):
    async def go():
        async with websockets.connect(wsurl(rsgi, "/ws_info?x=1")) as c:
            return json.loads(await c.recv())
    d = run(go())
    assert d == {"proto": "ws", "rsgi_version": "1.6", "http_version": "1.1", "scheme": "http",
                 "method": "GET", "path": "/ws_info", "query_string": "x=1", "authority": None,
                 "host": f"127.0.0.1:{rsgi.port}",
                 "types": ["RSGIWebsocketProtocol", "RSGIWebsocketTransport"]}


def test_ws_close_message_then_closed(rsgi, tmp_path):
    report = tmp_path / "ws.json"

    async def go():
        async with websockets.connect(wsurl(rsgi, f"/ws_report?report={report}")) as c:
            await c.send("a")
            await c.send(b"b")
    run(go())
    assert json.loads(wait_file(report)) == [
        [2, "a"], [1, "62"], [0, None],
        "granian._granian.RSGIProtocolClosed:True", "granian._granian.RSGIProtocolClosed:True"]


@pytest.mark.parametrize("path,status", [("/ws_reject", 403), ("/ws_reject?status=401", 401),
                                         ("/ws_noaccept", 403)])
def test_ws_denied(rsgi, path, status):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(wsurl(rsgi, path)):
                pass
        return e.value.status_code
    assert run(go()) == status
    assert get(rsgi, "/info").status_code == 200


@pytest.mark.parametrize("code,seen", [(1000, 1000), (4001, 4001), (1005, 1005), (0, 1005)])
def test_ws_close_after_accept(rsgi, code, seen):
    async def go():
        async with websockets.connect(wsurl(rsgi, f"/ws_close_code?code={code}")) as c:
            assert await c.recv() == "bye"
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await c.recv()
            return e.value.rcvd.code if e.value.rcvd else None
    assert run(go()) == seen
    assert "send after close: granian._granian.RSGIProtocolError:True" in wait_log(rsgi, "send after")


def test_ws_accept_twice(rsgi):
    async def go():
        async with websockets.connect(wsurl(rsgi, "/ws_accept_twice")) as c:
            return await c.recv()
    assert run(go()) == "granian._granian.RSGIProtocolError:True"


def test_ws_push_until_client_leaves(rsgi, tmp_path):
    report = tmp_path / "push"

    async def go():
        async with websockets.connect(wsurl(rsgi, f"/ws_push?report={report}"), max_queue=None) as c:
            for _ in range(10):
                assert await c.recv() == "ping"
    run(go())
    assert wait_file(report) == "granian._granian.RSGIProtocolClosed:True"


def test_ws_app_raises(rsgi):
    async def go():
        async with websockets.connect(wsurl(rsgi, "/ws_raise")) as c:
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await c.recv()
            return e.value.rcvd.code
    assert run(go()) == 1005                          # Granian: a close without a code
    assert "boom in a websocket" in wait_log(rsgi, "boom in a websocket")


def test_ws_max_message_size(wsgi_server):
    s = wsgi_server("rsgi_app:app", "--ws-max-message-size", "1000", interface="rsgi")

    async def go():
        async with websockets.connect(wsurl(s, "/ws_echo")) as c:
            await c.send(b"x" * 1000)
            assert await c.recv() == b"x" * 1000
            await c.send(b"x" * 1001)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await c.recv()
            return e.value.rcvd.code
    assert run(go()) == 1009


def test_no_ws_serves_upgrades_as_http(wsgi_server):
    s = wsgi_server("rsgi_app:app", "--no-ws", interface="rsgi")
    r = get(s, "/info", headers={"Connection": "upgrade", "Upgrade": "websocket",
                                 "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status_code == 200 and r.json()["proto"] == "http"


def test_ws_bad_handshake_is_400(rsgi):
    sock = rsgi.connect()
    sock.sendall(b"GET /ws_echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n")
    status, _, body, _ = read_response(sock)
    assert status == 400 and b"Sec-WebSocket-Key" in body


def test_ws_told_going_away_on_stop(wsgi_server):
    s = wsgi_server("rsgi_app:app", interface="rsgi")

    async def go():
        async with websockets.connect(wsurl(s, "/ws_echo")) as c:
            await c.send("x")
            assert await c.recv() == "x"
            s.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await c.recv()
            return e.value.rcvd.code
    assert run(go()) == 1001
    assert s.proc.wait(20) == 0


# ---- TLS -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("rsgi-tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "k.pem"), "-out", str(d / "c.pem"), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2"],
                   check=True, capture_output=True)
    return str(d / "c.pem"), str(d / "k.pem")


def test_tls_https_scheme_for_http_and_ws(wsgi_server, cert):
    s = wsgi_server("rsgi_app:app", "--ssl-certificate", cert[0], "--ssl-keyfile", cert[1],
                    interface="rsgi")
    ctx = ssl.create_default_context(cafile=cert[0])
    r = httpx.get(f"https://127.0.0.1:{s.port}/info", verify=ctx)
    assert r.json()["scheme"] == "https"
    data = os.urandom(1 << 20)
    r = httpx.post(f"https://127.0.0.1:{s.port}/echos", content=data, verify=ctx, timeout=30)
    assert r.content == data

    async def go():
        async with websockets.connect(f"wss://127.0.0.1:{s.port}/ws_info", ssl=ctx) as c:
            return json.loads(await c.recv())
    assert run(go())["scheme"] == "https"                 # RSGI: never wss
