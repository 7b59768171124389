"""granc behind nginx (Debian's nginx-light) on a Unix socket, the usual
production setup: streamed bodies both ways with bounded worker memory, and
upstream keep-alive.

nginx runs in the foreground as one process (daemon off; master_process
off) with everything it writes under tmp_path, and is always stopped by the
fixture's finalizer.
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import APPS, free_port, read_response, stop_process

sys.path.insert(0, APPS)
import blob_app  # noqa: E402  (the block pattern the download sends)

NGINX = "/usr/sbin/nginx"
MiB = 1 << 20
GiB = 1 << 30
RSS_LIMIT_KIB = 64 * 1024

CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log {level};
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi_temp;
    uwsgi_temp_path {tmp}/uwsgi_temp;
    scgi_temp_path {tmp}/scgi_temp;
    upstream granc {{
        server unix:{uds};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://granc;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, tmp, uds, debug=False):
        self.tmp, self.port = tmp, free_port()
        self.conf = os.path.join(tmp, "nginx.conf")
        self.error_log = os.path.join(tmp, "error.log")
        with open(self.conf, "w") as f:
            f.write(CONF.format(tmp=tmp, uds=uds, port=self.port,
                                level="debug" if debug else "info"))
        self.out = open(os.path.join(tmp, "nginx.out"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", tmp, "-e", self.error_log, "-c", self.conf],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start:\n" + self.errors(all_lines=True))
                time.sleep(0.02)

    def connect(self, timeout=30):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def errors(self, all_lines=False):
        try:
            with open(self.error_log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        keep = [x for x in lines if all_lines or re.search(r"\[(error|crit|alert|emerg)\]", x)]
        return "\n".join(keep)

    def stop(self):
        stop_process(self.proc, self.out)


@pytest.fixture
def nginx(tmp_path):
    """Factory: nginx(uds, debug=False) -> a running Nginx proxying to uds."""
    started = []

    def start(uds, debug=False):
        d = tmp_path / f"nginx{len(started)}"
        d.mkdir()
        n = Nginx(str(d), uds, debug)
        started.append(n)
        return n
    yield start
    for n in started:
        n.stop()


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def granc(wsgi_server, tmp_path, interface):
    target = "blob_app:app" if interface == "asgi" else "blob_app:wsgi"
    return wsgi_server(target, interface=interface, uds=str(tmp_path / "granc.sock"))


# ---- (a) and (d): 1 GiB PUT through nginx --------------------------------

def upload_1gib(s, ngx, tmp_path, framing):
    """PUT 1 GiB of distinct 1 MiB blocks through nginx; the app writes it to
    a file.  Check the file's sha256 and the worker's peak RSS."""
    (worker,) = s.worker_pids()
    out = tmp_path / "upload.bin"
    h = hashlib.sha256()
    sock = ngx.connect()
    head = f"PUT /upload?path={out} HTTP/1.1\r\nHost: x\r\n"
    if framing == "content-length":
        head += f"Content-Length: {GiB}\r\n\r\n"
    else:
        head += "Transfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head.encode())
    t0 = time.monotonic()
    for i in range(GiB // MiB):
        b = blob_app.block(i)
        h.update(b)
        if framing == "content-length":
            sock.sendall(b)
        else:
            sock.sendall(b"%x\r\n" % len(b) + b + b"\r\n")
    if framing == "chunked":
        sock.sendall(b"0\r\n\r\n")
    status, hdrs, body, _ = read_response(sock)
    elapsed = time.monotonic() - t0
    sock.close()
    peak = vm_hwm_kib(worker)
    assert status == 200, (status, body, s.log(), ngx.errors())
    j = json.loads(body)
    assert j["bytes"] == GiB, j
    assert 0 < j["max_chunk"] <= MiB, j            # pieces, never the whole body
    try:
        assert out.stat().st_size == GiB
        fh = hashlib.sha256()
        with open(out, "rb") as f:
            while chunk := f.read(4 * MiB):
                fh.update(chunk)
        assert fh.hexdigest() == h.hexdigest()
    finally:
        out.unlink(missing_ok=True)
    assert peak < RSS_LIMIT_KIB, f"worker peak RSS {peak} KiB"
    assert ngx.errors() == ""
    return elapsed, j


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_1gib_put_through_nginx_asgi(wsgi_server, nginx, tmp_path, framing):
    s = granc(wsgi_server, tmp_path, "asgi")
    ngx = nginx(s.uds)
    upload_1gib(s, ngx, tmp_path, framing)


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_1gib_put_through_nginx_wsgi(wsgi_server, nginx, tmp_path, framing):
    s = granc(wsgi_server, tmp_path, "wsgi")
    ngx = nginx(s.uds)
    _, j = upload_1gib(s, ngx, tmp_path, framing)
    assert j["max_chunk"] == 65536              # wsgi.input.read(65536) fills up


# ---- (b): a slow reader straight on the Unix socket -----------------------

@pytest.mark.slow
@pytest.mark.parametrize("interface,piece", [
    ("asgi", MiB),
    ("asgi", 4096),
    ("wsgi", MiB),
    ("wsgi", 4096),
])
def test_slow_reader_256mib_over_uds_bounded_rss(wsgi_server, tmp_path, interface, piece):
    """Read 64 KiB every 2 ms straight from granc's Unix socket (no nginx)
    while the app produces as fast as it can: all bytes arrive, in order,
    and the worker's peak RSS stays bounded."""
    s = granc(wsgi_server, tmp_path, interface)
    (worker,) = s.worker_pids()
    total = 256 * MiB
    want = hashlib.sha256()
    for i in range(total // MiB):
        want.update(blob_app.block(i))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(s.uds)
    sock.sendall(b"GET /download?total=%d&piece=%d HTTP/1.1\r\nHost: x\r\n\r\n"
                 % (total, piece))
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(65536)
        assert b, buf
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-length: %d\r\n" % total in head.lower() + b"\r\n"
    got, n, reads = hashlib.sha256(), len(body), 0
    got.update(body)
    t0 = time.monotonic()
    while n < total:
        time.sleep(0.002)                        # a slow client: 64 KiB / 2 ms
        b = sock.recv(min(65536, total - n))
        assert b, f"connection closed after {n} of {total} bytes"
        got.update(b)
        n += len(b)
        reads += 1
    elapsed = time.monotonic() - t0
    sock.close()
    assert n == total
    assert got.hexdigest() == want.hexdigest()
    assert reads >= total // 65536 - 1           # it really was read slowly
    peak = vm_hwm_kib(worker)
    assert peak < RSS_LIMIT_KIB, f"worker peak RSS {peak} KiB after {elapsed:.1f}s"


# ---- (c): upstream keep-alive --------------------------------------------

@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_200_requests_reuse_upstream_connections(wsgi_server, nginx, tmp_path, interface):
    s = granc(wsgi_server, tmp_path, interface)
    ngx = nginx(s.uds, debug=True)
    sock = ngx.connect(timeout=10)
    buf, seen = b"", set()
    for i in range(200):
        if i % 3 == 0:
            req = b"GET /hello?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
            sent = ""
        elif i % 3 == 1:
            sent = f"body-{i}" * 10
            req = (b"POST /hello?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (i, len(sent)) + sent.encode())
        else:
            sent = f"chunked-{i}"
            req = (b"POST /hello?i=%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   % i + b"%x\r\n%s\r\n0\r\n\r\n" % (len(sent), sent.encode()))
        sock.sendall(req)
        status, hdrs, body, buf = read_response(sock, buf)
        assert status == 200, (i, body)
        j = json.loads(body)
        assert j["i"] == str(i) and j["body"] == sent, j
        seen.update(j["sockets"])
    sock.close()
    # one connection for all: the worker never held more than a handful of
    # distinct sockets (listener, loop internals, the upstream connection)
    assert len(seen) <= 8, f"{len(seen)} distinct sockets in the worker: no reuse"
    with open(ngx.error_log, errors="replace") as f:
        dbg = f.read()
    reused = dbg.count("get keepalive peer: using connection")
    assert reused >= 199, f"nginx reused an upstream connection {reused} times"
    assert ngx.errors() == ""
    assert "error" not in s.log().lower()


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_unread_request_bodies_behind_nginx(wsgi_server, nginx, tmp_path, interface):
    """The app answers 404 without reading the body: a small body is
    drained and the upstream connection kept; a big one still gets its 404."""
    s = granc(wsgi_server, tmp_path, interface)
    ngx = nginx(s.uds)
    sock = ngx.connect(timeout=30)
    buf, seen = b"", set()
    for i in range(50):
        body = b"u" * (1000 + i)
        sock.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)
        status, _, rbody, buf = read_response(sock, buf)
        assert status == 404 and json.loads(rbody) == {"path": "/nope"}
        sock.sendall(b"GET /hello?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, _, rbody, buf = read_response(sock, buf)
        assert status == 200, rbody
        j = json.loads(rbody)
        assert j["i"] == str(i)
        seen.update(j["sockets"])
    sock.close()
    assert len(seen) <= 8, f"{len(seen)} distinct sockets: unread bodies cost the connection"
    # 50 MB the app never reads: the 404 still comes back whole
    size = 50_000_000
    sock = ngx.connect(timeout=30)
    sock.sendall(b"PUT /nope HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    block, sent = b"z" * 65536, 0
    try:
        while sent < size:
            sent += sock.send(block[:size - sent])
    except OSError:
        pass                                      # nginx may stop reading: fine
    status, _, rbody, _ = read_response(sock)
    sock.close()
    assert status == 404 and json.loads(rbody) == {"path": "/nope"}
    assert ngx.errors() == ""


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_concurrent_uploads_through_nginx(wsgi_server, nginx, tmp_path, interface):
    """Eight 32 MiB uploads at once share the worker: none mixes with another."""
    s = granc(wsgi_server, tmp_path, interface)
    ngx = nginx(s.uds)
    results, errors = {}, []

    def one(k):
        try:
            out = tmp_path / f"up{k}.bin"
            h = hashlib.sha256()
            sock = ngx.connect(timeout=60)
            sock.sendall(b"PUT /upload?path=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % (str(out).encode(), 32 * MiB))
            for i in range(32):
                b = blob_app.block(k * 1000 + i)
                h.update(b)
                sock.sendall(b)
            status, _, body, _ = read_response(sock)
            sock.close()
            with open(out, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            out.unlink()
            results[k] = (status, json.loads(body)["bytes"], got == h.hexdigest())
        except Exception as e:                   # reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert results == {k: (200, 32 * MiB, True) for k in range(8)}
    assert ngx.errors() == ""


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_client_aborts_upload_through_nginx(wsgi_server, nginx, tmp_path, interface):
    """The client leaves mid-upload: nginx drops the upstream connection, the
    app stops reading, and the same worker serves the next request."""
    s = granc(wsgi_server, tmp_path, interface)
    ngx = nginx(s.uds)
    (worker,) = s.worker_pids()
    out = tmp_path / "aborted.bin"
    sock = ngx.connect(timeout=30)
    sock.sendall(b"PUT /upload?path=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % (str(out).encode(), GiB))
    for i in range(64):
        sock.sendall(blob_app.block(i))
    sock.close()
    r = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # the worker is not stuck on the dead upload
        c = ngx.connect(timeout=10)
        c.sendall(b"GET /hello?i=after HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(c)
        c.close()
        if r[0] == 200:
            break
    assert r[0] == 200 and json.loads(r[2])["i"] == "after"
    assert out.stat().st_size <= 64 * MiB
    assert s.worker_pids() == [worker] and s.proc.poll() is None
    time.sleep(0.2)
    size = out.stat().st_size
    time.sleep(0.3)
    assert out.stat().st_size == size            # nobody is still writing


def test_background_task_does_not_block_pooled_upstream(wsgi_server, nginx, tmp_path):
    s = wsgi_server("star_app:app", interface="asgi", uds=str(tmp_path / "granc.sock"))
    ngx = nginx(s.uds)
    out = tmp_path / "bg.txt"
    a = ngx.connect(timeout=10)                  # client A starts a 1 s background task
    a.sendall(b"POST /background?path=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
              % str(out).encode())
    status, _, body, _ = read_response(a)
    assert status == 202 and body == b"accepted"
    a.close()
    b = ngx.connect(timeout=10)                  # client B, another connection
    t0 = time.monotonic()
    b.sendall(b"GET /loop HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(b)
    dt = time.monotonic() - t0
    b.close()
    assert status == 200 and json.loads(body)["loop"] == "uvloop.Loop"
    assert dt < 0.5, f"client B waited {dt:.2f}s behind A's background task"
    assert not out.exists()
