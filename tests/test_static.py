"""Static files (--static-path-*): served before any Python, over real
sockets, HTTP/1.1 (plain and TLS) and HTTP/2; traversal, conditional and
range requests, memory and descriptors under slow and vanishing readers."""
import hashlib
import os
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import APPS, ASAN, BIN, Server, read_response

IFACES = {"wsgi": "wsgi_app:app", "asgi": "asgi_app:app", "rsgi": "rsgi_app:app"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("static")
    m = d / "m"
    (m / "sub").mkdir(parents=True)
    (m / "empty").mkdir()
    (m / "a.txt").write_bytes(b"hello world\n")
    (m / "style.css").write_bytes(b"body{}\n")
    (m / "img.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    (m / "data.unknownext").write_bytes(b"?")
    (m / "big.bin").write_bytes(os.urandom(5 * MiB + 123))
    (m / "sub" / "index.html").write_bytes(b"<p>index</p>")
    (m / "with space.txt").write_bytes(b"spaced")
    (d / "secret.txt").write_bytes(b"SECRET")
    os.symlink(str(d / "secret.txt"), str(m / "out.txt"))      # leaves the mount
    os.symlink("a.txt", str(m / "in.txt"))                       # stays inside
    os.mkfifo(str(m / "fifo"))
    m2 = d / "m2"
    m2.mkdir()
    (m2 / "two.txt").write_bytes(b"second mount")
    huge = d / "huge"
    huge.mkdir()
    with open(huge / "huge.bin", "wb") as f:
        f.truncate(64 * MiB)
    return d


def serve(tree, *args, iface="wsgi", mounts=None, **kw):
    if mounts is None:
        mounts = ["--static-path-mount", str(tree / "m")]
    return Server(IFACES[iface], *mounts, *args, interface=iface, **kw).start()


@pytest.fixture(scope="module")
def srv(tree):
    s = serve(tree, "--static-path-dir-to-file", "index.html",
              mounts=["--static-path-route", "/static", "--static-path-mount", str(tree / "m"),
                      "--static-path-mount", str(tree / "m2"), "--static-path-route", "/two"],
              iface="wsgi")
    yield s
    s.stop()


def get(s, path, method="GET", headers=(), sock=None):
    own = sock is None
    sock = sock or s.connect()
    try:
        h = "".join(f"{k}: {v}\r\n" for k, v in headers)
        sock.sendall(f"{method} {path} HTTP/1.1\r\nhost: x\r\n{h}\r\n".encode("latin-1"))
        st, hd, body, _ = read_response(sock, head_req=method == "HEAD")
        return st, hd, body
    finally:
        if own:
            sock.close()


def test_small_file(srv, tree):
    st, h, body = get(srv, "/static/a.txt")
    assert (st, body) == (200, b"hello world\n")
    assert h["content-type"] == "text/plain"
    assert h["content-length"] == "12"
    assert h["cache-control"] == "max-age=86400"
    assert h["accept-ranges"] == "bytes"
    assert h["etag"].startswith('"') and "last-modified" in h


def test_types(srv):
    assert get(srv, "/static/style.css")[1]["content-type"] == "text/css"
    assert get(srv, "/static/img.png")[1]["content-type"] == "image/png"
    st, h, _ = get(srv, "/static/data.unknownext")
    assert st == 200 and "content-type" not in h


def test_big_file_exact(srv, tree):
    st, h, body = get(srv, "/static/big.bin")
    assert st == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256((tree / "m" / "big.bin").read_bytes()).digest()


def test_keep_alive_and_encoded_name(srv):
    sock = srv.connect()
    try:
        for _ in range(3):
            assert get(srv, "/static/with%20space.txt", sock=sock)[2] == b"spaced"
            assert get(srv, "/info", sock=sock)[0] == 200          # the app
    finally:
        sock.close()


def test_missing_and_directories(srv):
    st, _, body = get(srv, "/static/nope.txt")
    assert (st, body) == (404, b"Not found")
    assert get(srv, "/static/empty")[0] == 404                 # no index.html in it
    assert get(srv, "/static/sub")[2] == b"<p>index</p>"       # dir-to-file
    assert get(srv, "/static/sub/")[2] == b"<p>index</p>"
    assert get(srv, "/static/fifo")[0] == 404                  # not a regular file
    assert get(srv, "/static/a.txt/x")[0] == 404


def test_several_mounts_and_segments(srv):
    assert get(srv, "/two/two.txt")[2] == b"second mount"
    assert get(srv, "/two/a.txt")[0] == 404
    st, _, body = get(srv, "/staticfoo")                        # the app's
    assert st != 404 or body != b"Not found"
    assert get(srv, "/info")[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E%2Fsecret.txt",
    "/static/sub/..%2f..%2fsecret.txt", "/static/%00a.txt", "/static/a.txt%00",
    "/static/..%5csecret.txt", "/static/\\..\\secret.txt", "/static//etc/passwd",
    "/static/%2fetc%2fpasswd", "/static/out.txt", "/static/sub/../../secret.txt",
])
def test_traversal_refused(srv, path):
    st, _, body = get(srv, path)
    assert b"SECRET" not in body and b"root:" not in body
    assert st in (404, 400)


def test_symlink_inside_refused_by_default(srv):
    assert get(srv, "/static/in.txt")[0] == 404


def test_follow_symlinks(tree):
    s = serve(tree, "--static-path-follow-symlinks")
    try:
        assert get(s, "/static/out.txt")[2] == b"SECRET"
        assert get(s, "/static/in.txt")[2] == b"hello world\n"
        assert get(s, "/static/../secret.txt")[0] == 404
    finally:
        s.stop()


def test_conditional(srv):
    _, h, _ = get(srv, "/static/a.txt")
    etag, lm = h["etag"], h["last-modified"]
    assert get(srv, "/static/a.txt", headers=[("if-none-match", etag)])[0] == 304
    assert get(srv, "/static/a.txt", headers=[("if-none-match", f'"x", W/{etag}')])[0] == 304
    assert get(srv, "/static/a.txt", headers=[("if-none-match", "*")])[0] == 304
    assert get(srv, "/static/a.txt", headers=[("if-none-match", '"other"')])[0] == 200
    st, h2_, body = get(srv, "/static/a.txt", headers=[("if-modified-since", lm)])
    assert (st, body) == (304, b"") and h2_["etag"] == etag
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(srv, "/static/a.txt", headers=[("if-modified-since", old)])[0] == 200
    # If-None-Match wins over If-Modified-Since
    assert get(srv, "/static/a.txt", headers=[("if-none-match", '"x"'),
                                              ("if-modified-since", lm)])[0] == 200


def test_ranges(srv, tree):
    data = (tree / "m" / "big.bin").read_bytes()
    size = len(data)
    st, h, body = get(srv, "/static/big.bin", headers=[("range", "bytes=100-1048675")])
    assert st == 206 and body == data[100:1048676]
    assert h["content-range"] == f"bytes 100-1048675/{size}"
    st, h, body = get(srv, "/static/big.bin", headers=[("range", "bytes=-10")])
    assert st == 206 and body == data[-10:]
    st, h, body = get(srv, "/static/big.bin", headers=[("range", f"bytes={size - 5}-")])
    assert st == 206 and body == data[-5:]
    st, h, body = get(srv, "/static/a.txt", headers=[("range", "bytes=6-999")])
    assert (st, body, h["content-range"]) == (206, b"world\n", "bytes 6-11/12")
    st, h, body = get(srv, "/static/a.txt", headers=[("range", "bytes=12-")])
    assert (st, h["content-range"], body) == (416, "bytes */12", b"")
    assert get(srv, "/static/a.txt", headers=[("range", "bytes=0-1,3-4")])[0] == 200
    assert get(srv, "/static/a.txt", headers=[("range", "lines=1-2")])[0] == 200
    _, h, _ = get(srv, "/static/a.txt")
    ok = [("range", "bytes=0-4"), ("if-range", h["etag"])]
    assert get(srv, "/static/a.txt", headers=ok)[:1] == (206,)
    assert get(srv, "/static/a.txt", headers=[("range", "bytes=0-4"),
                                              ("if-range", h["last-modified"])])[0] == 206
    st, _, body = get(srv, "/static/a.txt", headers=[("range", "bytes=0-4"),
                                                     ("if-range", '"stale"')])
    assert (st, body) == (200, b"hello world\n")


def test_head_and_methods(srv):
    st, h, body = get(srv, "/static/a.txt", method="HEAD")
    assert (st, body, h["content-length"]) == (200, b"", "12")
    st, h, _ = get(srv, "/static/a.txt", method="POST")
    assert st == 405 and h["allow"] == "GET, HEAD"
    assert get(srv, "/static/nope", method="DELETE")[0] == 405


def test_expires_zero(tree):
    s = serve(tree, "--static-path-expires", "0")
    try:
        st, h, _ = get(s, "/static/a.txt")
        assert st == 200 and "cache-control" not in h
    finally:
        s.stop()


def test_access_log_and_metrics(tree):
    s = serve(tree, "--access-log")
    try:
        get(s, "/static/a.txt")
        get(s, "/static/missing")
        deadline = time.monotonic() + 5
        while '"GET /static/missing HTTP/1.1" 404' not in s.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert '"GET /static/a.txt HTTP/1.1" 200' in s.log()
        assert '"GET /static/missing HTTP/1.1" 404' in s.log()
    finally:
        s.stop()


@pytest.mark.parametrize("iface", ["wsgi", "asgi", "rsgi"])
def test_every_interface(tree, iface):
    s = serve(tree, iface=iface)
    try:
        assert get(s, "/static/a.txt")[2] == b"hello world\n"
        st, _, body = get(s, "/static/big.bin", headers=[("range", "bytes=0-99")])
        assert (st, len(body)) == (206, 100)
        assert get(s, "/static/nope")[0] == 404
        assert get(s, "/info")[2] != b"Not found"
        assert hashlib.sha256(get(s, "/static/big.bin")[2]).digest() == \
            hashlib.sha256((tree / "m" / "big.bin").read_bytes()).digest()
    finally:
        s.stop()


# ---- TLS and HTTP/2 ---------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("stpki"))
    with open(os.path.join(d, "req.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name=dn\n[dn]\n")
    subprocess.run(["openssl", "req", "-config", "req.cnf", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                    "-subj", "/CN=localhost"], cwd=d, check=True, capture_output=True, timeout=60)
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


def tls_connect(s, alpn=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=10))


def h2_get(sock, path, headers=(), scheme="http"):
    """One request over a fresh h2 connection: (status, headers, body)."""
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.increment_flow_control_window(16 * MiB)
    c.send_headers(1, [(":method", "GET"), (":scheme", scheme), (":authority", "x"),
                       (":path", path)] + list(headers), end_stream=True)
    sock.sendall(c.data_to_send())
    status, hd, body = None, {}, bytearray()
    while True:
        data = sock.recv(1 << 20)
        assert data, "connection closed"
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                hd = {k.decode(): v.decode() for k, v in ev.headers}
                status = int(hd[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                return status, hd, bytes(body)
            elif isinstance(ev, h2.events.StreamReset):
                raise AssertionError("stream reset")
        d = c.data_to_send()
        if d:
            sock.sendall(d)


def test_tls(tree, cert):
    s = serve(tree, "--ssl-certificate", cert[0], "--ssl-keyfile", cert[1], "--http", "1")
    try:
        data = (tree / "m" / "big.bin").read_bytes()
        for path, hd, want, st_want in [("/static/big.bin", [], data, 200),
                                        ("/static/big.bin", [("range", "bytes=7-70000")],
                                         data[7:70001], 206),
                                        ("/static/nope", [], b"Not found", 404)]:
            sock = tls_connect(s)
            try:
                st, _, body = get(s, path, headers=hd, sock=sock)
            finally:
                sock.close()
            assert (st, body == want) == (st_want, True)
    finally:
        s.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_http2(tree, cert, tls):
    args = ["--ssl-certificate", cert[0], "--ssl-keyfile", cert[1]] if tls else []
    s = serve(tree, *args, iface="asgi")
    data = (tree / "m" / "big.bin").read_bytes()

    def conn():
        return tls_connect(s, ["h2"]) if tls else s.connect()
    scheme = "https" if tls else "http"
    try:
        for path, hd, want, st_want in [("/static/big.bin", [], data, 200),
                                        ("/static/big.bin", [("range", "bytes=-1000")],
                                         data[-1000:], 206),
                                        ("/static/a.txt", [], b"hello world\n", 200),
                                        ("/static/nope", [], b"Not found", 404),
                                        ("/static/%2e%2e/secret.txt", [], b"Not found", 404)]:
            sock = conn()
            try:
                st, h, body = h2_get(sock, path, hd, scheme)
            finally:
                sock.close()
            assert (st, body == want) == (st_want, True), path
        sock = conn()
        try:
            _, h, _ = h2_get(sock, "/static/a.txt", scheme=scheme)
        finally:
            sock.close()
        sock = conn()
        try:
            assert h2_get(sock, "/static/a.txt", [("if-none-match", h["etag"])], scheme)[0] == 304
        finally:
            sock.close()
    finally:
        s.stop()


# ---- memory and descriptors ---------------------------------------------------

def worker_pid(s):
    (pid,) = s.worker_pids()
    return pid


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_slow_reader_flat_memory(tree, proto):
    s = serve(tree, mounts=["--static-path-mount", str(tree / "huge")], iface="asgi")
    try:
        pid = worker_pid(s)
        get(s, "/static/huge.bin", headers=[("range", "bytes=0-1000")])
        base = rss_kib(pid)
        sock = s.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        if proto == "h1":
            sock.sendall(b"GET /static/huge.bin HTTP/1.1\r\nhost: x\r\n\r\n")
            got = 0
            peak = base
            while got < 64 * MiB:
                b = sock.recv(256 * 1024)
                assert b
                got += len(b)
                if got % (8 * MiB) < 256 * 1024:
                    time.sleep(0.05)
                    peak = max(peak, rss_kib(pid))
            assert got >= 64 * MiB
        else:
            c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            c.initiate_connection()
            c.increment_flow_control_window(256 * MiB)
            c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                               (":path", "/static/huge.bin")], end_stream=True)
            sock.sendall(c.data_to_send())
            got, peak, ended = 0, base, False
            while not ended:
                data = sock.recv(256 * 1024)
                assert data
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        got += len(ev.data)
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        ended = True
                d = c.data_to_send()
                if d:
                    sock.sendall(d)
                if got % (8 * MiB) < 256 * 1024:
                    time.sleep(0.05)
                    peak = max(peak, rss_kib(pid))
            assert got == 64 * MiB
        sock.close()
        assert peak - base < 16 * 1024, (base, peak)
    finally:
        s.stop()


@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_resets_leak_no_descriptor(tree, iface):
    s = serve(tree, mounts=["--static-path-mount", str(tree / "huge")], iface=iface)
    try:
        pid = worker_pid(s)
        get(s, "/static/huge.bin", headers=[("range", "bytes=0-10")])
        time.sleep(0.2)
        base = nfds(pid)
        for i in range(20):
            sock = s.connect()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            if i % 2:
                c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
                c.initiate_connection()
                c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                   (":path", "/static/huge.bin")], end_stream=True)
                sock.sendall(c.data_to_send())
            else:
                sock.sendall(b"GET /static/huge.bin HTTP/1.1\r\nhost: x\r\n\r\n")
            sock.recv(1000)
            sock.close()                    # RST mid-transfer
        deadline = time.monotonic() + 10
        while nfds(pid) > base and time.monotonic() < deadline:
            time.sleep(0.05)
        assert nfds(pid) <= base
        assert get(s, "/static/huge.bin", headers=[("range", "bytes=0-3")])[2] == b"\0" * 4
    finally:
        s.stop()


# ---- configuration errors ---------------------------------------------------

def run_bad(*args):
    r = subprocess.run([BIN, "--interface", "wsgi", "--port", "0", *args, "wsgi_app:app"],
                       capture_output=True, text=True, timeout=30, cwd=APPS,
                       env={k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    return r.returncode, lines


def test_count_mismatch(tree):
    rc, lines = run_bad("--static-path-mount", str(tree / "m"), "--static-path-mount",
                        str(tree / "m2"))
    assert rc != 0 and len(lines) == 1
    assert "--static-path-route" in lines[0] and "--static-path-mount" in lines[0]
    rc, lines = run_bad("--static-path-mount", str(tree / "m"), "--static-path-route", "/a",
                        "--static-path-route", "/b")
    assert rc != 0 and len(lines) == 1 and "--static-path-route" in lines[0]


def test_missing_mount(tree):
    rc, lines = run_bad("--static-path-mount", str(tree / "nope"))
    assert rc != 0 and len(lines) == 1 and "--static-path-mount" in lines[0]
    rc, lines = run_bad("--static-path-mount", str(tree / "m" / "a.txt"))
    assert rc != 0 and len(lines) == 1 and "--static-path-mount" in lines[0]


def test_routes_without_mounts_serve_the_app(tree):
    s = serve(tree, "--static-path-route", "/info", mounts=[])
    try:
        assert get(s, "/info")[0] == 200
    finally:
        s.stop()


def test_env_variables(tree):
    s = serve(tree, mounts=[], env={"GRANIAN_STATIC_PATH_MOUNT": str(tree / "m"),
                                    "GRANIAN_STATIC_PATH_ROUTE": "/files",
                                    "GRANIAN_STATIC_PATH_EXPIRES": "1h"})
    try:
        st, h, body = get(s, "/files/a.txt")
        assert (st, body, h["cache-control"]) == (200, b"hello world\n", "max-age=3600")
    finally:
        s.stop()


def test_metrics_count_static(tree):
    import re
    import urllib.request
    s = serve(tree, "--metrics", "--metrics-port", "0")
    try:
        m = re.search(r"Metrics exporter listening at: http://[^ ]*:(\d+)", s.log())
        assert m, s.log()
        get(s, "/static/a.txt")
        get(s, "/static/missing")

        def count(text, name):
            return sum(int(float(l.split()[-1])) for l in text.splitlines()
                       if l.startswith(f"granian_{name}{{") or l.startswith(f"granian_{name} "))
        deadline = time.monotonic() + 10
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/metrics",
                                          timeout=5).read().decode()
            got = (count(text, "static_requests_handled"), count(text, "static_requests_err"))
            if got == (2, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == (2, 1), text
        assert count(text, "requests_handled") >= 2
    finally:
        s.stop()
