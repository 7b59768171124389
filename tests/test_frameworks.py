"""Real ASGI frameworks under --interface asgi: Starlette, FastAPI, Django.

Debian's python3-starlette (0.26), python3-fastapi (0.92, pydantic 1),
python3-multipart, python3-django (3.2), python3-uvloop.
"""
import hashlib
import json
import os
import socket
import subprocess
import time

import httpx
import pytest

from conftest import APPS, BIN, read_response

LOOPS = {
    "asyncio": "asyncio.unix_events._UnixSelectorEventLoop",
    "uvloop": "uvloop.Loop",
}


@pytest.fixture(params=["asyncio", "uvloop"])
def star(request, wsgi_server, tmp_path):
    """Starlette on each event loop; .report is its lifespan's log file."""
    report = tmp_path / "lifespan.txt"
    s = wsgi_server("star_app:app", "--loop", request.param, interface="asgi",
                    env={"STAR_REPORT": str(report)})
    s.report, s.loop = report, request.param
    return s


@pytest.fixture(params=["asyncio", "uvloop"])
def fast(request, wsgi_server):
    s = wsgi_server("fast_app:app", "--loop", request.param, interface="asgi")
    s.loop = request.param
    return s


# ---- Starlette ----------------------------------------------------------

def test_star_loop_is_the_one_asked_for(star):
    r = httpx.get(star.url + "/loop")
    assert r.status_code == 200
    assert r.json() == {"loop": LOOPS[star.loop]}


def test_default_loop_is_uvloop(wsgi_server):
    s = wsgi_server("star_app:app", interface="asgi")
    assert httpx.get(s.url + "/loop").json() == {"loop": LOOPS["uvloop"]}


def test_star_path_params_and_query(star):
    r = httpx.get(star.url + "/items/42/wid%20get?q=hello%20world&tag=a&tag=b%26c")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"item_id": 42, "name": "wid get", "q": "hello world",
                        "tags": ["a", "b&c"], "path": "/items/42/wid get",
                        "method": "GET", "client_host": "127.0.0.1", "root_path": ""}
    # the int convertor does not match: Starlette's own 404
    r = httpx.get(star.url + "/items/forty/x")
    assert r.status_code == 404 and r.text == "Not Found"
    # wrong method: 405 from the router
    r = httpx.post(star.url + "/items/1/x")
    assert r.status_code == 405 and r.text == "Method Not Allowed"


def test_star_post_body_and_json(star):
    doc = {"a": [1, 2, 3], "b": "é", "nested": {"x": None}}
    raw = json.dumps(doc).encode()
    r = httpx.post(star.url + "/json", content=raw,
                   headers={"content-type": "application/json"})
    assert r.status_code == 201
    assert r.json() == {"raw_len": len(raw), "data": doc, "content_type": "application/json"}
    # a chunked request body (no Content-Length) reads the same
    r = httpx.post(star.url + "/json", content=iter([raw[:5], raw[5:]]),
                   headers={"content-type": "application/json"})
    assert r.status_code == 201 and r.json()["data"] == doc


def test_star_streaming_response_wire_format(star):
    # StreamingResponse of an async generator: one HTTP chunk per item
    sock = star.connect()
    sock.sendall(b"GET /stream?n=12 HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while not buf.endswith(b"\r\n0\r\n\r\n"):
        b = sock.recv(65536)
        assert b, buf
        buf += b
    sock.close()
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    hdrs = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    assert hdrs["transfer-encoding"] == "chunked"
    assert hdrs["content-type"] == "text/plain; charset=utf-8"
    assert hdrs["x-stream"] == "yes"
    assert "content-length" not in hdrs
    want = b"".join(b"%x\r\n%s\r\n" % (len(x), x)
                    for x in (f"line {i}\n".encode() for i in range(12))) + b"0\r\n\r\n"
    assert body == want


def test_star_streaming_response_httpx(star):
    with httpx.stream("GET", star.url + "/stream?n=50") as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert text == "".join(f"line {i}\n" for i in range(50))


def test_star_streaming_small_lines_to_a_paused_client(star):
    n, pad = 10_000, 1000                        # 10 MB in 1 KB messages
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)   # a small window
    sock.settimeout(30)
    sock.connect(("127.0.0.1", star.port))
    sock.sendall(b"GET /stream?n=%d&delay=0&pad=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (n, pad))
    time.sleep(0.5)                              # the client is busy for a moment
    status, hdrs, body, _ = read_response(sock)
    sock.close()
    assert status == 200 and hdrs["transfer-encoding"] == "chunked"
    assert body == "".join(f"line {i}" + "." * pad + "\n" for i in range(n)).encode()
    assert "output queue full" not in star.log()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_star_request_stream_counts_upload(star, framing):
    data = os.urandom(8 * 1024 * 1024 + 123)
    parts = [data[i:i + 100_000] for i in range(0, len(data), 100_000)]
    content = data if framing == "content-length" else iter(parts)
    r = httpx.put(star.url + "/count", content=content, timeout=30)
    assert r.status_code == 200
    j = r.json()
    assert j["bytes"] == len(data)
    assert j["sha256"] == hashlib.sha256(data).hexdigest()
    # streamed, not buffered whole: many pieces, none anywhere near 8 MiB
    assert j["chunks"] > 8 and j["max_chunk"] <= 1024 * 1024, j


def test_star_request_stream_empty_body(star):
    r = httpx.post(star.url + "/count", content=b"")
    assert r.json() == {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest(),
                        "chunks": 0, "max_chunk": 0}


def test_star_background_task_runs_after_response(star, tmp_path):
    out = tmp_path / "bg.txt"
    t0 = time.monotonic()
    with httpx.Client(base_url=star.url) as c:
        r = c.post("/background", params={"path": str(out)})
        elapsed = time.monotonic() - t0
        assert r.status_code == 202 and r.text == "accepted"
        assert r.headers["content-length"] == "8"
        # the response came before the task (which sleeps 1 s) finished
        assert elapsed < 0.9, elapsed
        assert not out.exists()
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.read_text() == "written by the background task"
        # the keep-alive connection still serves the next request
        assert c.get("/loop").status_code == 200
    assert "Traceback" not in star.log()




def test_star_sse_polling_is_disconnected(star):
    # request.is_disconnected() cancels its receive() at once, while
    # StreamingResponse's own listener task awaits receive() too
    r = httpx.get(star.url + "/events?n=5")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.text == "".join(f"data: {i}\n\n" for i in range(5))
    assert "Application callable raised" not in star.log()


def test_star_receive_after_timed_out_receive(star):
    # asyncio.wait_for(request.receive(), 0.05) three times: the body, then nothing
    r = httpx.get(star.url + "/longpoll")
    assert r.status_code == 200
    assert r.json() == {"timeouts": 2}           # the first receive() is the (empty) body


def test_star_client_disconnect_stops_streaming(star, tmp_path):
    report = tmp_path / "forever.txt"
    sock = star.connect()
    sock.sendall(b"GET /forever?report=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(report).encode())
    buf = b""
    while b"tick 3\n" not in buf:
        b = sock.recv(65536)
        assert b, buf
        buf += b
    assert buf.startswith(b"HTTP/1.1 200 OK\r\n")
    sock.close()
    deadline = time.monotonic() + 5
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # the generator was stopped (cancelled by Starlette's disconnect
    # listener, or closed) soon after the client left -- not left running
    assert report.exists(), "the stream kept going after the client left"
    what, n = report.read_text().split(" after ")
    assert what in ("CancelledError", "GeneratorExit"), what
    time.sleep(0.3)
    assert report.read_text().split(" after ")[1] == n
    # and the server still serves
    assert httpx.get(star.url + "/loop").status_code == 200


def test_star_file_response(star, tmp_path):
    data = os.urandom(300_000)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    r = httpx.get(star.url + "/file", params={"path": str(p)})
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["content-type"] == "application/x-test"
    assert r.headers["content-disposition"] == 'attachment; filename="data.bin"'


def test_star_head_has_no_body_and_keeps_connection(star):
    # Starlette sends a body for HEAD too; the server must drop it
    get = httpx.get(star.url + "/loop")
    sock = star.connect()
    sock.sendall(b"HEAD /loop HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /items/6/y HTTP/1.1\r\nHost: x\r\n\r\n")
    status, hdrs, body, buf = read_response(sock, head_req=True)
    assert status == 200 and body == b""
    assert hdrs["content-length"] == get.headers["content-length"]
    status, hdrs, body, buf = read_response(sock, buf)
    assert status == 200 and json.loads(body)["item_id"] == 6
    sock.settimeout(0.3)
    try:
        extra = buf + sock.recv(65536)
    except socket.timeout:
        extra = buf
    assert extra == b""
    sock.close()




def test_star_background_task_does_not_hold_keepalive_connection(star, tmp_path):
    out = tmp_path / "bg.txt"
    with httpx.Client(base_url=star.url) as c:
        r = c.post("/background", params={"path": str(out)})
        assert r.status_code == 202
        t0 = time.monotonic()
        r2 = c.get("/loop")                      # same connection
        dt = time.monotonic() - t0
        assert r2.status_code == 200
        assert dt < 0.5, f"next request on the connection took {dt:.2f}s"
        assert not out.exists()                  # the 1 s task still runs


def test_star_lifespan_per_worker(wsgi_server, tmp_path):
    report = tmp_path / "lifespan.txt"
    s = wsgi_server("star_app:app", interface="asgi", workers=2,
                    env={"STAR_REPORT": str(report)})
    assert report.read_text() == "startup\n" * 2
    assert s.stop() == 0
    assert report.read_text() == "startup\n" * 2 + "shutdown\n" * 2


def test_star_lifespan_state_and_shutdown(star):
    assert star.report.read_text() == "startup\n"
    for n in (1, 2, 3):
        r = httpx.get(star.url + "/state")
        assert r.status_code == 200
        assert r.json() == {"db": "connected", "counter": n, "app_state": "app-state"}
    assert star.stop() == 0
    assert star.report.read_text() == "startup\nshutdown\n"
    assert "Lifespan" not in star.log()


def test_star_exception_is_500_and_logged(star):
    r = httpx.get(star.url + "/boom")
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    # a handled exception class: the app's own handler answers
    r = httpx.get(star.url + "/teapot")
    assert r.status_code == 418 and r.json() == {"error": "short and stout"}
    # the worker survives
    assert httpx.get(star.url + "/loop").status_code == 200
    deadline = time.monotonic() + 5
    while "RuntimeError: boom from starlette" not in star.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    log = star.log()
    assert "RuntimeError: boom from starlette" in log
    assert log.count("boom from starlette") >= 1 and "short and stout" not in log


def _run_failing_startup(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
    env["STAR_FAIL"] = "1"
    env["STAR_REPORT"] = str(tmp_path / "lifespan.txt")
    return subprocess.run([BIN, "--interface", "asgi", "--port", "0", "star_app:app"],
                          cwd=APPS, env=env, capture_output=True, text=True, timeout=60)


def test_star_lifespan_startup_failure_exits(tmp_path):
    # the lifespan raises: Starlette sends lifespan.startup.failed, then
    # re-raises; the server must not serve, and must say why
    r = _run_failing_startup(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "ASGI lifespan startup failed" in out
    assert "RuntimeError: database unreachable" in out
    assert "Started worker-1" not in out
    assert not (tmp_path / "lifespan.txt").exists()


def test_star_lifespan_startup_failure_not_called_unsupported(tmp_path):
    out = _run_failing_startup(tmp_path)
    log = out.stdout + out.stderr
    assert "ASGI lifespan startup failed" in log
    assert "continuing without Lifespan support" not in log, log


def test_star_asginl_skips_lifespan(wsgi_server, tmp_path):
    report = tmp_path / "lifespan.txt"
    s = wsgi_server("star_app:app", interface="asginl", env={"STAR_REPORT": str(report)})
    assert httpx.get(s.url + "/items/1/a").json()["item_id"] == 1
    assert not report.exists()
    # no lifespan: no state for the request, so the route fails with a 500
    assert httpx.get(s.url + "/state").status_code == 500
    assert s.stop() == 0
    assert not report.exists()


# ---- FastAPI ------------------------------------------------------------

def test_fast_loop_is_the_one_asked_for(fast):
    assert httpx.get(fast.url + "/loop").json() == {"loop": LOOPS[fast.loop]}


def test_fast_pydantic_model_post(fast):
    r = httpx.post(fast.url + "/items",
                   json={"name": "pen", "price": 1.25, "quantity": 4, "tags": ["a"]})
    assert r.status_code == 201
    assert r.json() == {"item": {"name": "pen", "price": 1.25, "quantity": 4, "tags": ["a"]},
                        "total": 5.0}
    r = httpx.post(fast.url + "/items", json={"name": "cup", "price": "2"})
    assert r.status_code == 201
    assert r.json() == {"item": {"name": "cup", "price": 2.0, "quantity": 1, "tags": []},
                        "total": 2.0}


def test_fast_validation_errors_are_422(fast):
    r = httpx.post(fast.url + "/items", json={"name": "", "price": -1, "quantity": "many"})
    assert r.status_code == 422
    assert r.json() == {"detail": [
        {"loc": ["body", "name"], "msg": "ensure this value has at least 1 characters",
         "type": "value_error.any_str.min_length", "ctx": {"limit_value": 1}},
        {"loc": ["body", "price"], "msg": "ensure this value is greater than 0",
         "type": "value_error.number.not_gt", "ctx": {"limit_value": 0}},
        {"loc": ["body", "quantity"], "msg": "value is not a valid integer",
         "type": "type_error.integer"},
    ]}
    r = httpx.post(fast.url + "/items", json={"price": 3})
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body", "name"], "msg": "field required",
                                    "type": "value_error.missing"}]}
    # not JSON at all
    r = httpx.post(fast.url + "/items", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["type"] == "value_error.jsondecode" and err["loc"] == ["body", 1]


def test_fast_path_and_query_params(fast):
    r = httpx.get(fast.url + "/users/7", params={"q": "a b", "limit": "5"})
    assert r.status_code == 200
    assert r.json() == {"user_id": 7, "q": "a b", "limit": 5}
    assert httpx.get(fast.url + "/users/8").json() == {"user_id": 8, "q": None, "limit": 10}
    r = httpx.get(fast.url + "/users/abc")
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["path", "user_id"],
                                    "msg": "value is not a valid integer",
                                    "type": "type_error.integer"}]}
    r = httpx.get(fast.url + "/users/1?limit=0")
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["query", "limit"],
                                    "msg": "ensure this value is greater than or equal to 1",
                                    "type": "value_error.number.not_ge",
                                    "ctx": {"limit_value": 1}}]}


def test_fast_dependency_injection(fast):
    r = httpx.get(fast.url + "/me")
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["header", "x-token"], "msg": "field required",
                                    "type": "value_error.missing"}]}
    r = httpx.get(fast.url + "/me", headers={"x-token": "wrong"})
    assert r.status_code == 401 and r.json() == {"detail": "bad token"}
    r = httpx.get(fast.url + "/me", headers={"x-token": "secret"})
    assert r.status_code == 200
    # (the 422 request above already opened session 1: FastAPI resolves
    # every sub-dependency before reporting validation errors)
    assert r.json() == {"name": "alice", "token": "secret", "session": 2}
    r = httpx.get(fast.url + "/me", headers={"x-token": "secret"})
    assert r.json()["session"] == 3
    # the generator dependency's cleanup ran after each response; the
    # on_event startup handler ran once (lifespan)
    deadline = time.monotonic() + 5
    while True:
        got = httpx.get(fast.url + "/cleanups").json()
        if got["cleanups"] == [1, 2, 3] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == {"cleanups": [1, 2, 3], "events": ["startup"]}


def test_fast_upload_file_multipart(fast):
    data = os.urandom(3 * 1024 * 1024 + 7)
    r = httpx.post(fast.url + "/upload", data={"note": "héllo"},
                   files={"file": ("blob.bin", data, "application/x-blob")}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "blob.bin", "content_type": "application/x-blob",
                        "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "note": "héllo"}
    # the form field missing: 422
    r = httpx.post(fast.url + "/upload", files={"file": ("a.txt", b"abc")})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "note"], "msg": "field required",
                                   "type": "value_error.missing"}]


# ---- Django (3.2: its ASGI handler refuses the lifespan scope) ------------

@pytest.fixture(params=["asyncio", "uvloop"])
def django_asgi(request, wsgi_server):
    return wsgi_server("djsite.asgi:application", "--loop", request.param, interface="asgi")


def test_django_asgi_lifespan_refused_with_warning(django_asgi):
    log = django_asgi.log()
    assert "[WARNING] ASGI Lifespan errored, continuing without Lifespan support" in log
    assert "Started worker-1" in log
    assert httpx.get(django_asgi.url + "/").status_code == 200
    # shutdown does not wait for a lifespan that never was
    t0 = time.monotonic()
    assert django_asgi.stop() == 0
    assert time.monotonic() - t0 < 5


def test_django_asgi_get_and_csrf_post(django_asgi):
    s = django_asgi
    r = httpx.get(s.url + "/?name=granc")
    assert r.status_code == 200
    assert r.text == "<h1>Hello granc</h1><p>/</p><p>3 items</p>"
    r = httpx.post(s.url + "/form", data={"a": "1"})
    assert r.status_code == 403
    token = "x" * 32
    r = httpx.post(s.url + "/form", data={"a": "1", "b": "é", "csrfmiddlewaretoken": token},
                   cookies={"csrftoken": token})
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"a": "1", "b": "é", "csrfmiddlewaretoken": token}


def test_django_asgi_multipart_upload(django_asgi):
    data = os.urandom(5 * 1024 * 1024)
    r = httpx.post(django_asgi.url + "/upload", files={"file": ("blob.bin", data)}, timeout=30)
    assert r.status_code == 200
    assert r.json() == {"name": "blob.bin", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}


def test_django_asgi_keepalive_raw(django_asgi):
    # several requests on one connection through Django's ASGI handler
    sock = django_asgi.connect()
    buf = b""
    for name in ("a", "b", "c"):
        sock.sendall(b"GET /?name=%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode())
        status, _, body, buf = read_response(sock, buf)
        assert status == 200
        assert body == b"<h1>Hello %s</h1><p>/</p><p>3 items</p>" % name.encode()
    sock.close()


def test_django_asgi_url_prefix(wsgi_server):
    s = wsgi_server("djsite.asgi:application", "--url-path-prefix", "/site", interface="asgi")
    token = "y" * 32
    r = httpx.post(s.url + "/site/form", data={"csrfmiddlewaretoken": token},
                   cookies={"csrftoken": token})
    assert r.status_code == 200 and r.json()["script_name"] == "/site"
    r = httpx.get(s.url + "/site/?name=p")
    assert r.text == "<h1>Hello p</h1><p>/site/</p><p>3 items</p>"
