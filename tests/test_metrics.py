"""--metrics: Granian's Prometheus exporter, served by the master.

The exposition is parsed strictly (a small parser below: every sample must
follow its "# TYPE" line, names and labels must be Granian's), and the
counters are checked against traffic the test makes itself.
"""
import os
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest

from conftest import read_response

PREFIX = "granian_"
MAIN = ["workers_spawns", "workers_respawns_for_err",
        "workers_respawns_for_lifetime", "workers_respawns_for_rss"]
WORKER = {
    "worker_lifetime": "counter", "connections_active": "gauge",
    "connections_handled": "counter", "connections_err": "counter",
    "requests_handled": "counter", "static_requests_handled": "counter",
    "static_requests_err": "counter", "blocking_threads": "gauge",
    "blocking_queue": "gauge", "blocking_idle_cumulative": "counter",
    "blocking_busy_cumulative": "counter", "py_wait_cumulative": "counter",
}
TYPE_RE = re.compile(r"# TYPE (granian_[a-z_]+) (counter|gauge)")
SAMPLE_RE = re.compile(r'(granian_[a-z_]+)(?:\{worker="(\d+)"\})? (-?\d+)')


def parse(text):
    """{name: (type, {worker label or None: int})}, strictly."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families, current = {}, None
    for line in text[:-1].split("\n"):
        m = TYPE_RE.fullmatch(line)
        if m:
            name = m.group(1)
            assert name not in families, f"family {name} twice"
            families[name] = (m.group(2), {})
            current = name
            continue
        m = SAMPLE_RE.fullmatch(line)
        assert m, f"not a sample: {line!r}"
        assert m.group(1) == current, f"{line!r} outside its family"
        samples = families[current][1]
        assert m.group(2) not in samples, f"duplicate sample {line!r}"
        samples[m.group(2)] = int(m.group(3))
    return families


def metrics_port(s):
    m = re.search(r"Metrics exporter listening at: http://[^ ]*:(\d+)", s.log())
    assert m, s.log()
    return int(m.group(1))


def metrics_server(wsgi_server, *args, **kw):
    s = wsgi_server("wsgi_app:app", "--metrics", "--metrics-port", "0", *args, **kw)
    s.mport = metrics_port(s)
    return s


def scrape(s, path="/metrics"):
    r = httpx.get(f"http://127.0.0.1:{s.mport}{path}", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def total(fams, name):
    return sum(fams[PREFIX + name][1].values())


def wait_until(s, cond, timeout=10):
    """Scrape until cond(families) holds; return the last families."""
    deadline = time.monotonic() + timeout
    while True:
        fams = scrape(s)
        if cond(fams) or time.monotonic() > deadline:
            return fams
        time.sleep(0.05)


def exporter(s, timeout=10):
    return socket.create_connection(("127.0.0.1", s.mport), timeout=timeout)


# ---- the exposition ---------------------------------------------------------

def test_names_and_types(wsgi_server):
    s = metrics_server(wsgi_server)
    fams = scrape(s)
    expect = {PREFIX + n: "counter" for n in MAIN}
    expect.update({PREFIX + n: t for n, t in WORKER.items()})
    assert {n: f[0] for n, f in fams.items()} == expect
    assert list(fams) == list(expect)               # in Granian's order
    for n in MAIN:
        assert list(fams[PREFIX + n][1]) == [None]
    for n in WORKER:
        assert list(fams[PREFIX + n][1]) == ["1"], n
    assert fams[PREFIX + "workers_spawns"][1][None] == 1
    assert total(fams, "workers_respawns_for_err") == 0
    assert 0 <= total(fams, "worker_lifetime") < 60


def test_any_path_and_head(wsgi_server):
    s = metrics_server(wsgi_server)
    assert PREFIX + "requests_handled" in scrape(s, "/anything/at/all?x=1")
    r = httpx.head(f"http://127.0.0.1:{s.mport}/")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0


def test_two_workers_have_their_labels(wsgi_server):
    s = metrics_server(wsgi_server, workers=2)
    fams = scrape(s)
    assert fams[PREFIX + "workers_spawns"][1][None] == 2
    for n in WORKER:
        assert sorted(fams[PREFIX + n][1]) == ["1", "2"], n


# ---- the counters -----------------------------------------------------------

def test_requests_and_connections_counted(wsgi_server):
    s = metrics_server(wsgi_server, workers=2)
    before = scrape(s)
    n = 7
    for _ in range(n):                      # one connection per request
        assert httpx.get(s.url + "/info").status_code == 200
    want = total(before, "requests_handled") + n
    conns = total(before, "connections_handled") + n
    fams = wait_until(s, lambda f: total(f, "requests_handled") >= want)
    assert total(fams, "requests_handled") == want
    assert total(fams, "connections_handled") == conns
    with httpx.Client() as c:               # keep-alive: one connection, n requests
        for _ in range(n):
            assert c.get(s.url + "/info").status_code == 200
    fams = wait_until(s, lambda f: total(f, "requests_handled") >= want + n)
    assert total(fams, "requests_handled") == want + n
    assert total(fams, "connections_handled") == conns + 1
    assert total(fams, "connections_err") == 0


def test_a_bad_request_is_not_a_connection_error(wsgi_server):
    # Granian counts connections_err only when accept() fails (for TLS:
    # when the handshake fails); hyper's 400 for a malformed request
    # counts nothing but the connection
    s = metrics_server(wsgi_server)
    c = s.connect()
    c.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert read_response(c)[0] == 400
    c.close()
    fams = wait_until(s, lambda f: total(f, "connections_active") == 0)
    assert total(fams, "connections_handled") == 1
    assert total(fams, "connections_err") == 0


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out",
                        "c.pem", "-subj", "/CN=localhost", "-days", "2"],
                       cwd=d, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return str(d / "c.pem"), str(d / "k.pem")


def test_a_failed_tls_handshake_is_a_connection_error(wsgi_server, cert):
    # Granian: TLS accept = handshake; a failed one is connections_err,
    # and only a completed one is connections_handled
    s = metrics_server(wsgi_server, "--ssl-certificate", cert[0], "--ssl-keyfile", cert[1])
    c = s.connect()
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")     # plain HTTP: no handshake
    c.settimeout(10)
    try:
        while c.recv(4096):
            pass
    except ConnectionResetError:
        pass
    c.close()
    fams = wait_until(s, lambda f: total(f, "connections_active") == 0)
    assert total(fams, "connections_err") == 1
    assert total(fams, "connections_handled") == 0
    with httpx.Client(verify=False) as h:
        assert h.get(f"https://127.0.0.1:{s.port}/info").status_code == 200
    fams = wait_until(s, lambda f: total(f, "connections_handled") == 1)
    assert total(fams, "connections_handled") == 1
    assert total(fams, "connections_err") == 1


def test_connections_active_sees_an_idle_keep_alive_connection(wsgi_server):
    s = metrics_server(wsgi_server)
    assert total(wait_until(s, lambda f: total(f, "connections_active") == 0),
                 "connections_active") == 0
    c = s.connect()
    c.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(c)[0] == 200       # answered, still open, idle
    fams = wait_until(s, lambda f: total(f, "connections_active") == 1)
    assert total(fams, "connections_active") == 1
    c.close()
    fams = wait_until(s, lambda f: total(f, "connections_active") == 0)
    assert total(fams, "connections_active") == 0


def test_blocking_time_grows(wsgi_server):
    s = metrics_server(wsgi_server)
    for _ in range(3):
        httpx.get(s.url + "/info")
    fams = wait_until(s, lambda f: total(f, "blocking_busy_cumulative") > 0)
    assert total(fams, "blocking_busy_cumulative") > 0
    assert total(fams, "blocking_threads") >= 1
    assert total(fams, "blocking_queue") >= 0


def test_rolling_restart_shows_one_worker_per_id(wsgi_server):
    s = metrics_server(wsgi_server, "--respawn-interval", "3")
    for _ in range(3):
        assert httpx.get(s.url + "/info").status_code == 200
    wait_until(s, lambda f: total(f, "requests_handled") == 3)
    time.sleep(1.1)                          # the old worker is >= 1 s old
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(s.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(s.worker_pids()) == 2, s.log()
    # both live now (the old one stops after --respawn-interval): one
    # worker "1", their counters summed, the older one's lifetime
    fams = scrape(s)
    assert "Stopping worker-1" not in s.log()
    assert fams[PREFIX + "workers_spawns"][1][None] == 2
    for n in WORKER:
        assert list(fams[PREFIX + n][1]) == ["1"], n
    assert total(fams, "requests_handled") == 3
    assert total(fams, "worker_lifetime") >= 1


def test_blocking_threads_is_one_from_the_start(wsgi_server):
    s = metrics_server(wsgi_server)
    assert total(scrape(s), "blocking_threads") == 1


def test_killed_worker_counts_a_respawn_for_err(wsgi_server):
    s = metrics_server(wsgi_server, "--respawn-failed-workers")
    (first,) = s.worker_pids()
    # a keep-alive scraper connected while the new worker is forked
    ka = exporter(s, timeout=15)
    ka.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(ka)[0] == 200
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while s.log().count("Started worker-1") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(s.worker_pids()) == 2, s.log()
    fams = scrape(s)
    assert fams[PREFIX + "workers_respawns_for_err"][1][None] == 1
    assert fams[PREFIX + "workers_respawns_for_lifetime"][1][None] == 0
    # the dead worker's slot is gone: one worker "1", counting afresh
    assert list(fams[PREFIX + "requests_handled"][1]) == ["1"]
    assert total(fams, "requests_handled") == 0
    assert s.proc.poll() is None
    # the connection still works, and the master's close at the idle
    # deadline really ends it: the new worker holds no copy of it
    ka.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(ka)[0] == 200
    assert ka.recv(100) == b""
    ka.close()


# ---- the exporter's HTTP ----------------------------------------------------

def test_keep_alive_and_pipelining(wsgi_server):
    s = metrics_server(wsgi_server)
    with exporter(s) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body, rest = read_response(c)
        assert st == 200 and "connection" not in h and parse(body.decode())
        # two more on the same connection, sent at once; the last one closes
        c.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, h, body, rest = read_response(c, rest, head_req=True)
        assert st == 200 and body == b""
        st, h, body, rest = read_response(c, rest)
        assert st == 200 and h["connection"] == "close" and parse(body.decode())
        assert rest == b"" and c.recv(100) == b""


def test_many_pipelined_requests_fill_the_socket(wsgi_server):
    # 3000 answers of ~1.5 KiB to a client with a small receive buffer that
    # reads nothing at first: the exporter meets EAGAIN and must wait for
    # POLLOUT, neither dropping bytes nor blocking the master
    s = metrics_server(wsgi_server)
    n = 3000
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(10)
    c.connect(("127.0.0.1", s.mport))
    with c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        time.sleep(0.5)
        assert PREFIX + "workers_spawns" in scrape(s)     # the master is not stuck
        rest = b""
        for _ in range(n):
            st, h, body, rest = read_response(c, rest)
            assert st == 200 and body.endswith(b"\n")
        assert rest == b"" and parse(body.decode())


@pytest.mark.parametrize("req,status", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
    (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"this is not http\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n", 431),
])
def test_bad_requests_are_answered_and_closed(wsgi_server, req, status):
    s = metrics_server(wsgi_server)
    with exporter(s) as c:
        c.sendall(req)
        st, h, body, rest = read_response(c, head_req=True)
        assert st == status and h["connection"] == "close"
        if status == 405:
            assert h["allow"] == "GET, HEAD"
        assert c.recv(100) == b""


def test_slow_client_does_not_block_a_scrape(wsgi_server):
    s = metrics_server(wsgi_server)
    slow = exporter(s)
    slow.sendall(b"GET / HTTP/1.1\r\nHo")      # and never more
    t0 = time.monotonic()
    assert PREFIX + "workers_spawns" in scrape(s)
    assert time.monotonic() - t0 < 2
    slow.settimeout(15)
    assert slow.recv(100) == b""                 # closed at the 5 s deadline
    assert 3 < time.monotonic() - t0 < 12
    slow.close()


def _cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_master_rests_then_serves(wsgi_server):
    """EMFILE on the exporter's listener: the scrapers stay in the backlog,
    which stays readable; the master must not spin on it, and must serve
    them once descriptors free up."""
    import resource
    s = metrics_server(wsgi_server)
    pid = s.proc.pid
    used = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
    low = min(set(range(len(used) + 1)) - used)     # the first free number
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (low, hard))
    waiting = [exporter(s) for _ in range(3)]
    try:
        time.sleep(0.3)
        c0 = _cpu_s(pid)
        time.sleep(2)
        spent = _cpu_s(pid) - c0
        assert spent < 0.3, f"the master spent {spent:.2f} CPU-s in 2 s out of descriptors"
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    for c in waiting:
        c.settimeout(5)
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert c.recv(12) == b"HTTP/1.1 200"
        c.close()
    assert PREFIX + "workers_spawns" in scrape(s)


# ---- configuration ----------------------------------------------------------

def _free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_metrics_off_listens_nowhere(wsgi_server):
    port = _free_port()
    s = wsgi_server("wsgi_app:app", "--metrics-port", str(port))
    assert "Metrics exporter" not in s.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert httpx.get(s.url + "/info").status_code == 200


def test_metrics_port_in_use_is_a_startup_error(wsgi_server):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError) as e:
            wsgi_server("wsgi_app:app", "--metrics", "--metrics-port", str(port))
        assert "--metrics-port" in str(e.value) and "cannot bind" in str(e.value)


def test_metrics_from_the_environment(wsgi_server):
    s = wsgi_server("wsgi_app:app", env={"GRANIAN_METRICS_ENABLED": "1",
                                         "GRANIAN_METRICS_PORT": "0",
                                         "GRANIAN_METRICS_ADDRESS": "127.0.0.1"})
    s.mport = metrics_port(s)
    assert scrape(s)[PREFIX + "workers_spawns"][1][None] == 1
