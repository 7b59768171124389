"""ASGI 3.0 (spec 2.3) as Granian serves it, against the real binary."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from conftest import APPS, BIN, Server, read_response


@pytest.fixture(params=["asyncio", "uvloop"])
def asgi(request, wsgi_server):
    return wsgi_server("asgi_app:app", "--loop", request.param, interface="asgi")


@pytest.fixture
def asgi1(wsgi_server):
    return wsgi_server("asgi_app:app", interface="asgi")


def test_scope(asgi):
    r = httpx.get(asgi.url + "/info?a=1&b=%20", headers={"X-Thing": "V"})
    s = r.json()
    assert s["type"] == "http"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert s["http_version"] == "1.1"
    assert s["scheme"] == "http"
    assert s["method"] == "GET"
    assert s["path"] == "/info" and s["raw_path"] == "/info"
    assert s["query_string"] == "a=1&b=%20"
    assert s["root_path"] == ""
    assert s["server"] == ["127.0.0.1", str(asgi.port)]        # Granian: ports are str
    assert s["client"][0] == "127.0.0.1" and isinstance(s["client"][1], str)
    assert ["x-thing", "V"] in s["headers"]                      # names lower-cased
    assert s["headers"][0][0] == "host"                           # arrival order
    assert s["extensions"] == {"http.response.pathsend": {}, "websocket.http.response": {},
                               "http.response.trailers": {}}
    assert s["state"] == {"global": "test"}                       # lifespan state, copied
    assert s["task"] is True and s["sniffio"] == "asyncio"


def test_loop_choice(wsgi_server):
    s = wsgi_server("asgi_app:app", "--loop", "uvloop", interface="asgi")
    assert httpx.get(s.url + "/info").json()["loop"].startswith("uvloop")
    s2 = wsgi_server("asgi_app:app", "--loop", "asyncio", interface="asgi")
    assert httpx.get(s2.url + "/info").json()["loop"].startswith("asyncio")


def test_path_utf8_lossy_and_prefix(wsgi_server):
    s = wsgi_server("asgi_app:app", "--url-path-prefix", "/pre", interface="asgi")
    sock = s.connect()
    sock.sendall(b"GET /pre/%C3%A9t%E9 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(sock)
    assert status == 404
    assert json.loads(body)["path"] == "/pre/\u00e9t\ufffd"      # Granian: not stripped
    sock.sendall(b"GET /info HTTP/1.0\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(sock)
    s = json.loads(body)
    assert s["root_path"] == "/pre" and s["http_version"] == "1"   # Granian's '1'
    sock.close()


@pytest.mark.parametrize("size", [0, 10, 40_000, 3_000_000])
def test_echo(asgi, size):
    data = os.urandom(size)
    r = httpx.post(asgi.url + "/echo", content=data)
    assert r.status_code == 200 and r.content == data


def test_body_chunks_stream_in(asgi1):
    def gen():
        for i in range(40):
            yield bytes([i]) * 50_000
    r = httpx.post(asgi1.url + "/digest", content=gen())
    d = r.json()
    assert d["length"] == 2_000_000
    assert d["sha256"] == hashlib.sha256(b"".join(bytes([i]) * 50_000 for i in range(40))).hexdigest()
    assert d["chunks"] > 1                   # delivered as it arrived, not whole


def test_streamed_response(asgi):
    s = asgi.connect()
    s.sendall(b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body, _ = read_response(s)
    assert headers["transfer-encoding"] == "chunked" and body == b"000111222333"
    s.sendall(b"GET /stream?n=2&size=2 HTTP/1.0\r\n\r\n")       # HTTP/1.0: until close
    status, headers, body, _ = read_response(s)
    assert "transfer-encoding" not in headers and body == b"0011"


def test_single_body_is_fixed_length(asgi1):
    r = httpx.post(asgi1.url + "/echo", content=b"abc")
    assert r.headers["content-length"] == "3"
    assert "transfer-encoding" not in r.headers


def test_exception_gives_500(asgi1):
    r = httpx.get(asgi1.url + "/err_app")
    assert r.status_code == 500
    assert httpx.get(asgi1.url + "/info").status_code == 200
    log = asgi1.log()
    assert "Application callable raised an exception" in log
    assert "RuntimeError: boom from the asgi app" in log


def test_cancelled_task_gives_500(asgi1):
    # the task's end is read with one Task.exception() call, which raises
    # CancelledError for a cancelled task
    assert httpx.get(asgi1.url + "/cancel_self").status_code == 500
    assert "the application task was cancelled" in asgi1.log()
    assert httpx.get(asgi1.url + "/info").status_code == 200


def test_exception_mid_stream_aborts(asgi1):
    s = asgi1.connect()
    s.sendall(b"GET /err_mid HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    assert b"first" in data and not data.endswith(b"0\r\n\r\n")


def test_no_response_is_500(asgi1):
    assert httpx.get(asgi1.url + "/noresp").status_code == 500


def test_protocol_errors(asgi1):
    assert httpx.get(asgi1.url + "/err_proto/type").json() == {"error": "Unsupported ASGI message"}
    r = httpx.get(asgi1.url + "/err_proto/flow")
    assert r.text == "ASGI flow error: Response already started"


def test_pathsend(asgi1, tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(2_500_000)
    p.write_bytes(data)
    r = httpx.get(asgi1.url + "/pathsend", params={"path": str(p)})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data)) and r.content == data
    assert httpx.get(asgi1.url + "/pathsend", params={"path": str(tmp_path / "nope")}).status_code == 404


def test_trailers(asgi1):
    s = asgi1.connect()
    s.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
    data = b""
    while not data.endswith(b"\r\n\r\n") or b"x-checksum" not in data:
        data += s.recv(65536)
    assert b"transfer-encoding: chunked" in data
    assert data.endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc123\r\n\r\n")


def test_wait_for_in_app(asgi):
    assert httpx.get(asgi.url + "/wait_for").json() == {"timeout": True}


def test_sse_head_flushed_at_start(asgi1):
    s = asgi1.connect()
    t0 = time.monotonic()
    s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 0.25
    status, headers, body, _ = read_response(s, head)
    assert body == b"data: 1\n\n"


def test_keepalive_and_pipelining(asgi1):
    s = asgi1.connect()
    reqs = b""
    for i in range(30):
        body = b"x" * i
        reqs += b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    s.sendall(reqs)
    buf = b""
    for i in range(30):
        status, _, body, buf = read_response(s, buf)
        assert status == 200 and body == b"x" * i
    s.close()


def test_client_disconnect_seen_by_app(asgi1, tmp_path):
    report = tmp_path / "seen.json"
    s = asgi1.connect()
    s.sendall(b"GET /disconnect?report=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(report).encode())
    s.recv(65536)
    s.close()                                  # mid-stream
    deadline = time.time() + 10
    # the app creates the file, then writes it: wait for the whole report
    while not (report.exists() and report.read_text().endswith("]")) and time.time() < deadline:
        time.sleep(0.05)
    assert json.loads(report.read_text()) == ["send:OSError", "http.disconnect"]
    assert httpx.get(asgi1.url + "/info").status_code == 200


def test_backpressure_counts_requests(wsgi_server):
    # one request at a time; idle keep-alive connections take no permit
    s = wsgi_server("asgi_app:app", "--backpressure", "1", interface="asgi")
    idle = [s.connect() for _ in range(5)]
    with httpx.Client() as c:
        for _ in range(5):
            assert c.get(s.url + "/info").status_code == 200
    for i in idle:
        i.close()


# ---- lifespan --------------------------------------------------------------

def test_lifespan_shutdown_runs_on_sigterm(wsgi_server, tmp_path):
    report = tmp_path / "shutdown"
    s = wsgi_server("asgi_app:app", interface="asgi", env={"LIFESPAN_REPORT": str(report)})
    assert httpx.get(s.url + "/info").status_code == 200
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(20) == 0
    assert report.read_text() == "shutdown"


def test_lifespan_startup_failed_exits_1():
    env = dict(os.environ, LIFESPAN_FAIL="1")
    r = subprocess.run([BIN, "--interface", "asgi", "--port", "0", "--workers", "2", "asgi_app:app"],
                       cwd=APPS, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "nope" in r.stdout
    assert r.stdout.count("Spawning worker") == 2          # no respawn loop


def test_lifespan_raising_continues(wsgi_server):
    s = wsgi_server("asgi_app:app", interface="asgi", env={"LIFESPAN_RAISE": "1"})
    assert httpx.get(s.url + "/info").status_code == 200
    assert "ASGI Lifespan errored, continuing without Lifespan support" in s.log()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_request_tasks(wsgi_server, loop):
    # without a task factory, granc makes each request's Task itself
    # (asgi.c, new_task); one set by the app is used instead
    s = wsgi_server("asgi_app:app", "--loop", loop, interface="asginl")
    assert httpx.get(s.url + "/info").json()["task"] is True
    s = wsgi_server("factory_app:app", "--loop", loop, interface="asgi")
    for _ in range(3):
        r = httpx.get(s.url + "/")
        assert r.text.startswith("True "), r.text


def test_asginl_has_no_lifespan(wsgi_server):
    s = wsgi_server("asgi_app:app", interface="asginl")
    assert httpx.get(s.url + "/info").json()["state"] == {}


def test_sigterm_finishes_inflight_asgi(wsgi_server):
    s = wsgi_server("asgi_app:app", interface="asgi")
    sock = s.connect()
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(100)
    s.proc.send_signal(signal.SIGTERM)
    data = b""
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    assert data.endswith(b"data: 1\n\n\r\n0\r\n\r\n") or b"data: 1" in data
    assert s.proc.wait(20) == 0
