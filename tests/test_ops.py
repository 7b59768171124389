"""Operations features, each against the real binary over real sockets:
--forwarded-allow-ips, --max-requests(-jitter), --graceful-timeout, socket
activation (LISTEN_FDS, --fd), sd_notify (NOTIFY_SOCKET), --process-name,
--log-config, and idle keep-alive connections on stop.

The apps are tests/apps/ops_app.py: `app` (WSGI) and `asgi` (ASGI).
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter

import httpx
import pytest
import websockets

from conftest import APPS, BIN, Server, read_response

IFACES = ["wsgi", "asgi"]
TARGET = {"wsgi": "ops_app:app", "asgi": "ops_app:asgi"}


def clean_env(extra=None):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("GRANIAN_") and k != "VIRTUAL_ENV"}
    e.update(extra or {})
    return e


def run(args, env=None, timeout=30, **kw):
    """Run granc to completion (for start-up errors)."""
    return subprocess.run([BIN] + args, cwd=APPS, env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_error(r, needle):
    """Exit 1 before serving, one stderr line that names `needle`."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], lines[0]
    assert "Listening" not in r.stdout
    return lines[0]


def serve(make, iface, *args, **kw):
    return make(TARGET[iface], *args, interface=iface, **kw)


def who(s, headers=None, client=None):
    c = client or httpx.Client(timeout=10)
    try:
        r = c.get((s.url if not s.uds else "http://granc") + "/who", headers=headers or {})
    finally:
        if client is None:
            c.close()
    assert r.status_code == 200, r.text
    return r.json()


def wait_log(s, needle, timeout=20, count=1):
    deadline = time.monotonic() + timeout
    while s.log().count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return s.log().count(needle) >= count


def wait_file(path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def short_tmp():
    """A short directory: Unix socket paths must fit in 108 bytes."""
    d = tempfile.mkdtemp(prefix="gops", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ===========================================================================
# 1. --forwarded-allow-ips
# ===========================================================================

FWD = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("allow", [
    ["127.0.0.1"],
    ["127.0.0.0/8"],
    ["*"],
    ["10.0.0.1,127.0.0.1"],                      # a comma list
    ["10.0.0.1, 127.0.0.1"],                     # with a space
    ["10.0.0.1", "127.0.0.1"],                   # given twice
    ["::1,127.0.0.1/32"],
], ids=["ip", "cidr", "star", "commas", "comma-space", "repeated", "v6-and-v4"])
def test_forwarded_trusted(wsgi_server, iface, allow):
    args = [a for v in allow for a in ("--forwarded-allow-ips", v)]
    s = serve(wsgi_server, iface, *args)
    w = who(s, FWD)
    assert (w["addr"], w["port"], w["scheme"]) == ("1.2.3.4", "0", "https")
    assert (w["xff"], w["xfp"]) == ("1.2.3.4", "https")     # still passed as headers
    # without the headers: the peer itself
    w = who(s)
    assert w["addr"] == "127.0.0.1" and w["port"] != "0" and w["scheme"] == "http"


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("allow", [None, "10.0.0.1", "127.0.0.2", "128.0.0.0/1", "::1", "unix"])
def test_forwarded_untrusted_changes_nothing(wsgi_server, iface, allow):
    args = ["--forwarded-allow-ips", allow] if allow else []
    s = serve(wsgi_server, iface, *args)
    w = who(s, FWD)
    assert w["addr"] == "127.0.0.1" and w["port"] != "0" and w["scheme"] == "http"
    assert (w["xff"], w["xfp"]) == ("1.2.3.4", "https")


@pytest.mark.parametrize("allow,trusted", [("::1", True), ("::/0", True),
                                           ("127.0.0.1", False)])
def test_forwarded_ipv6_peer(wsgi_server, allow, trusted):
    s = serve(wsgi_server, "wsgi", "--host", "::1", "--forwarded-allow-ips", allow)
    r = httpx.get(f"http://[::1]:{s.port}/who", headers=FWD, timeout=10).json()
    if trusted:
        assert (r["addr"], r["port"], r["scheme"]) == ("1.2.3.4", "0", "https")
    else:
        assert r["addr"] == "::1" and r["scheme"] == "http"


def test_forwarded_v4_mapped_peer(wsgi_server):
    """On a dual-stack socket an IPv4 client is ::ffff:a.b.c.d; a v4 entry
    still matches it."""
    s = serve(wsgi_server, "wsgi", "--host", "::", "--forwarded-allow-ips", "127.0.0.0/8")
    r = httpx.get(f"http://127.0.0.1:{s.port}/who", headers=FWD, timeout=10).json()
    assert (r["addr"], r["port"], r["scheme"]) == ("1.2.3.4", "0", "https")


@pytest.mark.parametrize("iface", IFACES)
def test_forwarded_from_environment(wsgi_server, iface):
    s = serve(wsgi_server, iface, env={"GRANIAN_FORWARDED_ALLOW_IPS": "10.9.9.9 127.0.0.1"})
    w = who(s, FWD)
    assert (w["addr"], w["port"], w["scheme"]) == ("1.2.3.4", "0", "https")


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("allow,xff,want", [
    ("127.0.0.1,10.0.0.2", "1.2.3.4, 10.0.0.2", "1.2.3.4"),      # one trusted hop
    ("127.0.0.1", "1.2.3.4, 10.0.0.2", "10.0.0.2"),              # the hop is not trusted
    ("127.0.0.1,10.0.0.2", "5.6.7.8, 1.2.3.4,10.0.0.2", "1.2.3.4"),  # rightmost untrusted
    ("127.0.0.1,10.0.0.0/8", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: leftmost
    ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ("127.0.0.1,2001:db8::/32", "1.2.3.4, 2001:db8::5", "1.2.3.4"),
    ("*", "1.2.3.4, 10.0.0.2", "1.2.3.4"),                      # "*": every hop trusted
])
def test_forwarded_hops(wsgi_server, iface, allow, xff, want):
    s = serve(wsgi_server, iface, "--forwarded-allow-ips", allow)
    w = who(s, {"X-Forwarded-For": xff})
    assert (w["addr"], w["port"], w["scheme"]) == (want, "0", "http")


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("proto,want", [
    ("https", "https"), ("wss", "https"), ("http", "http"), ("ws", "http"),
    ("HTTPS", "https"), ("http, https", "https"), ("https,http", "http"), ("https,", "https"),
    ("gopher", "http"),
])
def test_forwarded_proto(wsgi_server, iface, proto, want):
    s = serve(wsgi_server, iface, "--forwarded-allow-ips", "127.0.0.1")
    w = who(s, {"X-Forwarded-Proto": proto})
    assert w["scheme"] == want
    assert w["addr"] == "127.0.0.1" and w["port"] != "0"    # no X-Forwarded-For


@pytest.mark.parametrize("iface", IFACES)
def test_forwarded_is_per_request(wsgi_server, iface):
    """On one keep-alive connection, each request stands on its own headers."""
    s = serve(wsgi_server, iface, "--forwarded-allow-ips", "127.0.0.1")
    with httpx.Client(timeout=10) as c:
        a = who(s, {"X-Forwarded-For": "1.1.1.1", "X-Forwarded-Proto": "https"}, client=c)
        b = who(s, {"X-Forwarded-For": "2.2.2.2"}, client=c)
        d = who(s, client=c)
    assert (a["addr"], a["scheme"]) == ("1.1.1.1", "https")
    assert (b["addr"], b["scheme"]) == ("2.2.2.2", "http")
    assert (d["addr"], d["scheme"]) == ("127.0.0.1", "http") and d["port"] != "0"


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_websocket_scheme(wsgi_server, trusted):
    args = ["--forwarded-allow-ips", "127.0.0.1"] if trusted else []
    s = serve(wsgi_server, "asgi", *args)

    async def go(headers):
        async with websockets.connect(f"ws://127.0.0.1:{s.port}/ws", extra_headers=headers) as c:
            return json.loads(await c.recv())
    got = asyncio.run(asyncio.wait_for(go(FWD), 30))
    if trusted:
        assert (got["addr"], got["port"], got["scheme"]) == ("1.2.3.4", "0", "wss")
        got = asyncio.run(asyncio.wait_for(go({"X-Forwarded-Proto": "ws"}), 30))
        assert got["scheme"] == "ws" and got["addr"] == "127.0.0.1"
    else:
        assert got["addr"] == "127.0.0.1" and got["scheme"] == "ws"


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_access_log(wsgi_server, iface, trusted):
    args = ["--forwarded-allow-ips", "127.0.0.1"] if trusted else []
    s = serve(wsgi_server, iface, "--access-log", "--access-log-fmt",
              "ACC %(addr)s|%(scheme)s|%(path)s|%(status)d", *args)
    who(s, FWD)
    want = "ACC 1.2.3.4|https|/who|200" if trusted else "ACC 127.0.0.1|http|/who|200"
    assert wait_log(s, want, 5), s.log()


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("allow,trusted", [("unix", True), ("*", True),
                                           ("127.0.0.1", False), (None, False)])
def test_forwarded_over_uds(wsgi_server, short_tmp, iface, allow, trusted):
    path = os.path.join(short_tmp, "g.sock")
    args = ["--forwarded-allow-ips", allow] if allow else []
    s = serve(wsgi_server, iface, *args, uds=path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as c:
        w = who(s, FWD, client=c)
    if trusted:
        assert (w["addr"], w["port"], w["scheme"]) == ("1.2.3.4", "0", "https")
    else:
        assert w["addr"] != "1.2.3.4" and w["scheme"] == "http"


@pytest.mark.parametrize("value", ["300.1.1.1", "1.2.3.4/99", "1.2.3.4/", "1.2.3.4/8x",
                                   "nope", "::1/129", "127.0.0.1,bad", "10.0.0.0/-1"])
def test_forwarded_bad_entry(value):
    r = run(["--interface", "wsgi", "--port", "0", "--forwarded-allow-ips", value,
             "ops_app:app"])
    line = one_error(r, "--forwarded-allow-ips")
    bad = value.split(",")[-1]
    assert bad in line
    r = run(["--interface", "wsgi", "--port", "0", "ops_app:app"],
            env={"GRANIAN_FORWARDED_ALLOW_IPS": value})
    one_error(r, "GRANIAN_FORWARDED_ALLOW_IPS")


# ===========================================================================
# 2. --max-requests, --max-requests-jitter
# ===========================================================================

def _drive(s, until_recycles, max_n=400, min_n=50, timeout=90):
    """Sequential requests, each on a new connection, until the log shows
    `until_recycles` replacements (and at least min_n requests).  Every
    answer must be a 200.  Returns the pids that answered, in order."""
    pids, deadline = [], time.monotonic() + timeout
    while len(pids) < max_n and time.monotonic() < deadline:
        r = httpx.get(s.url + "/who", timeout=10)
        assert r.status_code == 200, r.text
        pids.append(r.json()["pid"])
        if len(pids) >= min_n and s.log().count("served its --max-requests") >= until_recycles:
            break
        time.sleep(0.005)
    return pids


@pytest.mark.parametrize("iface", IFACES)
def test_max_requests_replaces_worker(wsgi_server, iface):
    s = serve(wsgi_server, iface, "--max-requests", "10", "--respawn-interval", "0.2")
    pids = _drive(s, until_recycles=3)
    log = s.log()
    assert log.count("served its --max-requests") >= 3, log
    assert log.count("Spawning worker-1 with PID") >= 4
    assert re.search(r"worker-1: 10 requests served \(--max-requests\)", log), log
    counts = Counter(pids)
    order = list(dict.fromkeys(pids))           # pids in order of first answer
    assert len(order) >= 3, counts
    assert set(order) <= set(s.worker_pids())
    for p in order[:-1]:                         # a replaced worker served its 10
        assert counts[p] >= 10, counts
    # every replaced worker is gone (stopped and reaped by the master)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in order[:-1]):
        time.sleep(0.05)
    assert [p for p in order[:-1] if os.path.exists(f"/proc/{p}")] == []
    assert s.proc.poll() is None
    assert s.stop() == 0


def test_max_requests_concurrent_clients_never_fail(wsgi_server):
    """Three clients at once while workers are being replaced."""
    s = serve(wsgi_server, "wsgi", "--max-requests", "15", "--respawn-interval", "0.2",
              workers=2)
    errors, pids = [], []
    stop = time.monotonic() + 6

    def client():
        while time.monotonic() < stop:
            try:
                r = httpx.get(s.url + "/who", timeout=10)
                if r.status_code != 200:
                    errors.append(r.status_code)
                else:
                    pids.append(r.json()["pid"])
            except httpx.HTTPError as e:
                errors.append(repr(e))
            time.sleep(0.005)
    ts = [threading.Thread(target=client) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == []
    assert s.log().count("served its --max-requests") >= 2, s.log()
    assert len(set(pids)) >= 3
    assert s.proc.poll() is None


def test_max_requests_jitter(wsgi_server):
    s = serve(wsgi_server, "wsgi", "--max-requests", "3", "--max-requests-jitter", "4",
              "--respawn-interval", "0.2")
    _drive(s, until_recycles=8, max_n=600, min_n=0, timeout=120)
    served = [int(n) for n in re.findall(r"worker-1: (\d+) requests served", s.log())]
    assert len(served) >= 8, s.log()
    assert all(3 <= n <= 7 for n in served), served
    assert len(set(served)) > 1, served          # 5**-7 odds of a false failure


def test_max_requests_from_environment(wsgi_server):
    s = serve(wsgi_server, "wsgi", "--respawn-interval", "0.2",
              env={"GRANIAN_MAX_REQUESTS": "5", "GRANIAN_MAX_REQUESTS_JITTER": "0"})
    _drive(s, until_recycles=1, min_n=0)
    assert "worker-1: 5 requests served (--max-requests)" in s.log()


def test_without_max_requests_no_replacement(wsgi_server):
    s = serve(wsgi_server, "wsgi", "--respawn-interval", "0.2")
    pids = {who(s)["pid"] for _ in range(40)}
    assert pids == set(s.worker_pids()) and len(pids) == 1
    assert "max-requests" not in s.log()


# ===========================================================================
# 3. --graceful-timeout
# ===========================================================================

def _slow_in_flight(s, arrivals, t):
    result = {}

    def go():
        try:
            r = httpx.get(s.url + f"/slow?t={t}", timeout=60)
            result["r"] = r
        except httpx.HTTPError as e:
            result["e"] = e
        result["at"] = time.monotonic()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    assert wait_file(arrivals), "the request never reached the app"
    return th, result


GRACEFUL_CASES = [("wsgi", []), ("wsgi", ["--blocking-threads", "1"]), ("asgi", [])]
GRACEFUL_IDS = ["wsgi-pool", "wsgi-inline", "asgi"]


@pytest.mark.parametrize("iface,extra", [
    GRACEFUL_CASES[0],
    GRACEFUL_CASES[1],
    GRACEFUL_CASES[2],
], ids=GRACEFUL_IDS)
def test_graceful_timeout_cuts_long_request(wsgi_server, tmp_path, iface, extra):
    arrivals = str(tmp_path / "arrivals")
    s = serve(wsgi_server, iface, "--graceful-timeout", "1", *extra,
              env={"OPS_ARRIVALS": arrivals})
    th, result = _slow_in_flight(s, arrivals, 8 if extra else 30)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    elapsed = time.monotonic() - t0
    assert rc == 0, (rc, s.log())
    assert 0.9 <= elapsed < 3.5, elapsed
    th.join(5)
    assert "e" in result, result                 # cut: no answer
    assert result["at"] - t0 < 4
    assert "graceful timeout" in s.log()


@pytest.mark.parametrize("iface", IFACES)
def test_graceful_timeout_from_environment(wsgi_server, tmp_path, iface):
    arrivals = str(tmp_path / "arrivals")
    s = serve(wsgi_server, iface, env={"OPS_ARRIVALS": arrivals, "GRANIAN_GRACEFUL_TIMEOUT": "1"})
    th, result = _slow_in_flight(s, arrivals, 30)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3.5
    th.join(5)
    assert "e" in result and "graceful timeout" in s.log()


@pytest.mark.parametrize("iface,extra", GRACEFUL_CASES, ids=GRACEFUL_IDS)
def test_graceful_timeout_lets_short_request_finish(wsgi_server, tmp_path, iface, extra):
    arrivals = str(tmp_path / "arrivals")
    s = serve(wsgi_server, iface, "--graceful-timeout", "5", *extra,
              env={"OPS_ARRIVALS": arrivals})
    th, result = _slow_in_flight(s, arrivals, 1.5)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    th.join(20)
    assert "r" in result, result
    assert result["r"].status_code == 200 and result["r"].content == b"slow done"
    assert s.proc.wait(20) == 0
    assert time.monotonic() - t0 < 4.5
    assert "graceful timeout" not in s.log()


# ===========================================================================
# 4. Socket activation: LISTEN_FDS and --fd
# ===========================================================================

def _dup_to(pairs):
    """preexec_fn: place each (source fd, target fd) in the child."""
    def pre():
        for src, dst in pairs:
            if src == dst:
                os.set_inheritable(dst, True)
            else:
                os.dup2(src, dst, inheritable=True)
    return pre


class Activated(Server):
    """granc started with sockets at given descriptors; with listen_pid
    "self", through `sh -c 'LISTEN_PID=$$ exec ...'` so that LISTEN_PID is
    granc's own pid."""

    def __init__(self, target, *args, socks=(), listen_pid=None, interface="wsgi",
                 env=None, uds=None):
        super().__init__(target, *args, interface=interface, env=env)
        self.socks, self.listen_pid, self.sock_uds = socks, listen_pid, uds

    def cmd(self):
        c = [BIN, "--interface", self.interface, "--port", "0"] + self.args + [self.target]
        if self.listen_pid == "self":
            return ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"] + c
        return c

    def start(self, wait=True):
        pairs = [(sk.fileno(), n) for sk, n in self.socks]
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env, pass_fds=[n for _, n in pairs],
                                     preexec_fn=_dup_to(pairs))
        if wait:
            self.uds = self.sock_uds       # wait_ready accepts a UDS instead of a port
            self.wait_ready()
        return self


@pytest.fixture
def activated():
    servers = []

    def make(*a, **kw):
        s = Activated(*a, **kw)
        servers.append(s)
        return s.start()
    yield make
    for s in servers:
        try:
            s.stop()
        finally:
            try:
                os.unlink(s.log_path)
            except OSError:
                pass


def tcp_socket(listen=True):
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    if listen:
        sk.listen(16)
    return sk


def _ports(s):
    return [int(p) for p in re.findall(r"Listening at: http://127\.0\.0\.1:(\d+)", s.log())]


@pytest.mark.parametrize("iface", IFACES)
@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound-only"])
def test_listen_fds_tcp(activated, iface, listening):
    sk = tcp_socket(listening)
    port = sk.getsockname()[1]
    s = activated(TARGET[iface], socks=[(sk, 3)], listen_pid="self", interface=iface,
                  env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"})
    assert _ports(s) == [port]
    w = who(s)
    assert w["env"] == {}                        # LISTEN_* are not the app's
    assert s.stop() == 0


def test_listen_fds_two_sockets(activated):
    a, b = tcp_socket(), tcp_socket()
    s = activated("ops_app:app", socks=[(a, 3), (b, 4)], listen_pid="self",
                  env={"LISTEN_FDS": "2"})
    want = [a.getsockname()[1], b.getsockname()[1]]
    assert _ports(s) == want
    for p in want:
        assert httpx.get(f"http://127.0.0.1:{p}/who", timeout=10).status_code == 200


@pytest.mark.parametrize("iface", IFACES)
def test_listen_fds_uds(activated, short_tmp, iface):
    path = os.path.join(short_tmp, "act.sock")
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.bind(path)
    sk.listen(16)
    s = activated(TARGET[iface], socks=[(sk, 3)], listen_pid="self", interface=iface,
                  env={"LISTEN_FDS": "1"}, uds=path)
    assert f"Listening at: unix:{path}" in s.log()
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as c:
        w = who(s, client=c)
    assert w["env"] == {}


def test_listen_fds_for_another_pid_ignored(activated):
    sk = tcp_socket()
    s = activated("ops_app:app", socks=[(sk, 3)],
                  env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    (port,) = _ports(s)
    assert port != sk.getsockname()[1]          # granc bound --port 0 itself
    assert who(s)["pid"] in s.worker_pids()


def test_listen_fds_not_a_socket(tmp_path):
    f = open(tmp_path / "plain", "w")
    r = subprocess.run(["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", BIN, "--interface", "wsgi",
                        "--port", "0", "ops_app:app"], cwd=APPS,
                       env=clean_env({"LISTEN_FDS": "1"}), capture_output=True, text=True,
                       timeout=30, pass_fds=[3], preexec_fn=_dup_to([(f.fileno(), 3)]))
    f.close()
    one_error(r, "LISTEN_FDS")


@pytest.mark.parametrize("iface", IFACES)
def test_fd_option(activated, iface):
    sk = tcp_socket()
    s = activated(TARGET[iface], "--fd", "5", socks=[(sk, 5)], interface=iface)
    assert _ports(s) == [sk.getsockname()[1]]
    assert who(s)["pid"] in s.worker_pids()


def test_fd_from_environment(activated):
    sk = tcp_socket(listen=False)
    s = activated("ops_app:app", socks=[(sk, 6)], env={"GRANIAN_FD": "6"})
    assert _ports(s) == [sk.getsockname()[1]]
    assert who(s)["pid"] in s.worker_pids()


def test_fd_uds(activated, short_tmp):
    path = os.path.join(short_tmp, "fd.sock")
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.bind(path)
    sk.listen(16)
    s = activated("ops_app:app", "--fd", "5", socks=[(sk, 5)], uds=path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as c:
        assert who(s, client=c)["pid"] in s.worker_pids()


@pytest.mark.parametrize("what", ["file", "closed", "udp"])
@pytest.mark.parametrize("src", ["argv", "env"])
def test_fd_not_a_listening_socket(tmp_path, what, src):
    keep = None
    if what == "file":
        keep = open(tmp_path / "plain", "w")
    elif what == "udp":
        keep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        keep.bind(("127.0.0.1", 0))
    pairs = [(keep.fileno(), 5)] if keep else []
    args = ["--interface", "wsgi", "--port", "0"]
    env = {}
    if src == "argv":
        args += ["--fd", "5"]
    else:
        env["GRANIAN_FD"] = "5"
    r = run(args + ["ops_app:app"], env=env, pass_fds=[n for _, n in pairs],
            preexec_fn=_dup_to(pairs))
    if keep:
        keep.close()
    one_error(r, "--fd" if src == "argv" else "GRANIAN_FD")


# ===========================================================================
# 5. sd_notify: NOTIFY_SOCKET
# ===========================================================================

def _notify_socket(addr):
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sk.bind(addr)
    return sk


def _recv(sk, timeout=20):
    sk.settimeout(timeout)
    data = sk.recv(4096).decode()
    return dict(l.split("=", 1) for l in data.split("\n") if l)


def _nothing_more(sk):
    sk.setblocking(False)
    try:
        extra = sk.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sk.setblocking(True)
    raise AssertionError(f"unexpected notification {extra!r}")


def _sd_notify_cycle(iface, path, workers, interval):
    sk = _notify_socket(path)
    s = Server(TARGET[iface], "--respawn-interval", interval, interface=iface, workers=workers,
               env={"NOTIFY_SOCKET": path})
    s.start(wait=False)
    try:
        m = _recv(sk)
        # only once every worker has loaded the app
        assert s.log().count("Started worker-") == workers, s.log()
        assert m == {"READY": "1", "MAINPID": str(s.proc.pid)}
        s.wait_ready()
        assert who(s)["env"] == {}                   # NOTIFY_SOCKET is not the app's
        _nothing_more(sk)

        s.proc.send_signal(signal.SIGHUP)
        m = _recv(sk)
        assert m.keys() == {"RELOADING", "MONOTONIC_USEC"} and m["RELOADING"] == "1", m
        assert abs(int(m["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 5
        m = _recv(sk)
        assert m.get("READY") == "1", m
        # READY again once the whole new generation has loaded the app
        assert s.log().count("Started worker-") == 2 * workers, s.log()
        _nothing_more(sk)

        s.proc.send_signal(signal.SIGTERM)
        assert _recv(sk) == {"STOPPING": "1"}
        assert s.proc.wait(20) == 0
        _nothing_more(sk)
    finally:
        s.stop()
        sk.close()
        os.unlink(s.log_path)


@pytest.mark.parametrize("iface", IFACES)
def test_sd_notify(short_tmp, iface):
    _sd_notify_cycle(iface, os.path.join(short_tmp, "notify"), 1, "0.2")


def test_sd_notify_initial_ready_waits_for_all_workers(short_tmp):
    path = os.path.join(short_tmp, "notify")
    sk = _notify_socket(path)
    s = Server("ops_app:app", workers=2, env={"NOTIFY_SOCKET": path})
    s.start(wait=False)
    try:
        assert _recv(sk)["READY"] == "1"
        assert s.log().count("Started worker-") == 2, s.log()
    finally:
        s.stop()
        sk.close()
        os.unlink(s.log_path)


def test_sd_notify_reload_ready_waits_for_all_workers(short_tmp):
    _sd_notify_cycle("wsgi", os.path.join(short_tmp, "notify"), 2, "2")


def test_sd_notify_abstract():
    name = f"granc-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    sk = _notify_socket("\0" + name)
    s = Server("ops_app:app", env={"NOTIFY_SOCKET": "@" + name})
    s.start(wait=False)
    try:
        m = _recv(sk)
        assert "Started worker-1" in s.log()
        assert m == {"READY": "1", "MAINPID": str(s.proc.pid)}
        s.wait_ready()
        assert who(s)["env"] == {}
        s.proc.send_signal(signal.SIGTERM)
        assert _recv(sk) == {"STOPPING": "1"}
        assert s.proc.wait(20) == 0
    finally:
        s.stop()
        sk.close()
        os.unlink(s.log_path)


@pytest.mark.parametrize("value", ["/nonexistent-granc-dir/notify", "relative/notify"])
def test_sd_notify_unusable_socket_is_harmless(wsgi_server, value):
    s = serve(wsgi_server, "wsgi", env={"NOTIFY_SOCKET": value})
    assert who(s)["pid"] in s.worker_pids()
    assert s.stop() == 0


def test_sd_notify_after_max_requests_no_second_ready(wsgi_server, short_tmp):
    """A --max-requests replacement is no reload: no RELOADING, no READY."""
    path = os.path.join(short_tmp, "notify")
    sk = _notify_socket(path)
    try:
        s = serve(wsgi_server, "wsgi", "--max-requests", "3", "--respawn-interval", "0.2",
                  env={"NOTIFY_SOCKET": path})
        assert _recv(sk)["READY"] == "1"
        _drive(s, until_recycles=1, min_n=0)
        assert wait_log(s, "Started worker-1", count=2)
        time.sleep(0.3)
        _nothing_more(sk)
    finally:
        sk.close()


# ===========================================================================
# 6. --process-name
# ===========================================================================

def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").decode("utf-8", "replace")


def comm(pid):
    with open(f"/proc/{pid}/comm", "rb") as f:
        return f.read().rstrip(b"\n").decode("utf-8", "replace")


def spawned(s):
    return [(int(i), int(p)) for i, p in
            re.findall(r"Spawning worker-(\d+) with PID: (\d+)", s.log())]


def _check_titles(s, name, ids=None):
    assert cmdline(s.proc.pid) == name
    assert comm(s.proc.pid) == name.encode()[:15].decode("utf-8", "ignore")
    for wid, pid in spawned(s):
        if ids is not None and pid not in ids:
            continue
        title = f"{name} worker-{wid}"
        assert cmdline(pid) == title, (wid, cmdline(pid))
        assert comm(pid) == title[:15]


@pytest.mark.parametrize("iface", IFACES)
def test_process_name(wsgi_server, iface):
    s = serve(wsgi_server, iface, "--process-name", "myapp-ops", "--respawn-interval", "0.2",
              workers=2)
    _check_titles(s, "myapp-ops")
    assert who(s)["pid"] in s.worker_pids()
    # a rolling restart's workers are named too
    s.proc.send_signal(signal.SIGHUP)
    assert wait_log(s, "Started worker-", count=4)
    new = [p for _, p in spawned(s)][2:]
    _check_titles(s, "myapp-ops", ids=new)
    assert s.stop() == 0


def test_process_name_from_environment(wsgi_server):
    s = serve(wsgi_server, "wsgi", env={"GRANIAN_PROCESS_NAME": "envtitle"})
    _check_titles(s, "envtitle")


def test_process_name_long(wsgi_server):
    name = "n" * 100 + "-" + "m" * 99
    s = serve(wsgi_server, "asgi", "--process-name", name)
    assert who(s)["pid"] in s.worker_pids()
    m = cmdline(s.proc.pid)
    assert name.startswith(m) and len(m) >= 100, m
    assert comm(s.proc.pid) == name[:15]
    ((_, wpid),) = spawned(s)
    assert (name + " worker-1").startswith(cmdline(wpid))
    assert comm(wpid) == name[:15]
    assert s.stop() == 0


def test_without_process_name_argv_intact(wsgi_server):
    s = serve(wsgi_server, "wsgi", "--url-path-prefix", "/pre")
    assert cmdline(s.proc.pid).split("\0") == s.cmd()
    assert httpx.get(s.url + "/pre/who").status_code == 200


# ===========================================================================
# 7. --log-config
# ===========================================================================

CUSTOM = "CUSTOM %(name)s %(levelname)s %(message)s"


def uds_client(s):
    if s.uds:
        return httpx.Client(transport=httpx.HTTPTransport(uds=s.uds), timeout=10)
    return httpx.Client(timeout=10)


def file_config(out):
    return {
        "version": 1,
        "formatters": {"custom": {"format": CUSTOM}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out),
                              "formatter": "custom"}},
        "loggers": {
            "_granian": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_in_file(path, needle, timeout=10):
    deadline = time.monotonic() + timeout
    while needle not in read(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return needle in read(path)


@pytest.fixture
def file_logged():
    """Factory: a started Server whose worker logs to the file `out`
    (readiness is read there, not on stdout)."""
    servers = []

    def make(iface, out, *args, env=None, quiet=False):
        # quiet: nothing logged at all, not even "Listening at": serve on a
        # Unix socket (a known address) and poll it with requests
        uds = os.path.join(os.path.dirname(str(out)), "q.sock") if quiet else None
        s = Server(TARGET[iface], *args, interface=iface, env=env, uds=uds)
        servers.append(s)
        s.start(wait=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(r"Listening at: http://[^ ]*:(\d+)", s.log())
            if m and "Started worker-1" in read(out):
                s.port = int(m.group(1))
                return s
            if quiet:
                try:
                    with uds_client(s) as c:
                        c.get("http://granc/who")
                    return s
                except httpx.TransportError:
                    pass
            if s.proc.poll() is not None:
                raise RuntimeError(f"granc exited {s.proc.returncode}:\n{s.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"granc did not start:\n{s.log()}\n{read(out)}")
    yield make
    for s in servers:
        try:
            s.stop()
        finally:
            os.unlink(s.log_path)


@pytest.mark.parametrize("iface", IFACES)
def test_log_config_to_file(file_logged, tmp_path, iface):
    out = tmp_path / "granc.log"
    conf = write_json(tmp_path / "log.json", file_config(out))
    s = file_logged(iface, out, "--log-config", conf, "--access-log")
    assert wait_in_file(out, "CUSTOM _granian INFO Started worker-1"), read(out)
    who(s)
    assert wait_in_file(out, "CUSTOM granian.access INFO "), read(out)
    access = [l for l in read(out).splitlines() if "granian.access" in l]
    assert len(access) == 1 and '127.0.0.1 - "GET /who HTTP/1.1" 200' in access[0], access
    stdout = s.log()
    # the master still writes to stdout; the worker's lines went to the file
    assert "Starting granc" in stdout and "Spawning worker-1" in stdout
    assert "Started worker-1" not in stdout and "GET /who" not in stdout
    assert "Spawning" not in read(out)
    assert "DEBUG" not in read(out)
    assert s.stop() == 0


@pytest.mark.parametrize("level,debug,info", [("debug", True, True), ("info", False, True),
                                              ("warning", False, False)])
def test_log_config_log_level(file_logged, tmp_path, level, debug, info):
    out = tmp_path / "granc.log"
    conf = write_json(tmp_path / "log.json", file_config(out))
    args = ("--log-config", conf, "--access-log", "--log-level", level)
    s = file_logged("wsgi", out, *args, quiet=not info)
    c = s.connect()
    c.sendall(b"BOGUS\r\n\r\n")                  # a 400: a debug line in the worker
    assert c.recv(100).startswith(b"HTTP/1.1 400")
    c.close()
    with uds_client(s) as uc:                     # its access line comes after
        who(s, client=uc)
    assert wait_in_file(out, "GET /who"), read(out)
    text = read(out)
    assert ("CUSTOM _granian DEBUG worker-1: answered 400" in text) == debug, text
    assert ("CUSTOM _granian INFO Started worker-1" in text) == info, text


def test_log_config_merges_over_defaults(wsgi_server, tmp_path):
    """Only "formatters" given: Granian's handlers and loggers (stdout) stay."""
    conf = write_json(tmp_path / "log.json", {"formatters": {
        "generic": {"format": "GEN %(name)s %(levelname)s %(message)s"},
        "access": {"format": "ACC %(name)s %(message)s"}}})
    s = serve(wsgi_server, "asgi", "--log-config", conf, "--access-log")
    assert "GEN _granian INFO Started worker-1" in s.log()
    who(s)
    assert wait_log(s, 'ACC granian.access [', 5), s.log()
    assert re.search(r'ACC granian\.access \[.*\] 127\.0\.0\.1 - "GET /who HTTP/1\.1" 200',
                     s.log())


def test_log_config_from_environment(file_logged, tmp_path):
    out = tmp_path / "granc.log"
    conf = write_json(tmp_path / "log.json", file_config(out))
    file_logged("wsgi", out, env={"GRANIAN_LOG_CONFIG": conf})
    assert wait_in_file(out, "CUSTOM _granian INFO Started worker-1"), read(out)


@pytest.mark.parametrize("src", ["argv", "env"])
def test_log_config_missing_file(tmp_path, src):
    missing = str(tmp_path / "nope.json")
    if src == "argv":
        r = run(["--interface", "wsgi", "--port", "0", "--log-config", missing, "ops_app:app"])
        line = one_error(r, "--log-config")
    else:
        r = run(["--interface", "wsgi", "--port", "0", "ops_app:app"],
                env={"GRANIAN_LOG_CONFIG": missing})
        line = one_error(r, "GRANIAN_LOG_CONFIG")
    assert missing in line


@pytest.mark.parametrize("content,error", [
    ("{not json", "JSONDecodeError"),
    ('{"handlers": {"x": {"class": "no.such.Handler"}}, "loggers": {}}', "ValueError"),
    ("[1, 2]", "Error"),
], ids=["syntax", "bad-handler", "not-an-object"])
@pytest.mark.parametrize("iface", IFACES)
def test_log_config_invalid(tmp_path, content, error, iface):
    conf = tmp_path / "log.json"
    conf.write_text(content)
    r = run(["--interface", iface, "--port", "0", "--log-config", str(conf), TARGET[iface]])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "--log-config" in out and error in out, out
    assert out.count("Spawning worker") == 1           # not respawned


# ===========================================================================
# 8. Idle keep-alive connections on stop
# ===========================================================================

KA_CASES = [("wsgi", []), ("wsgi", ["--blocking-threads", "1"]), ("asgi", [])]
KA_IDS = ["wsgi-pool", "wsgi-inline", "asgi"]


def _keepalive_conns(s, n):
    socks = []
    for _ in range(n):
        c = s.connect()
        c.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, rest = read_response(c)
        assert status == 200 and headers.get("connection", "").lower() != "close"
        socks.append(c)
    return socks


def _closed_within(socks, t0, limit):
    for c in socks:
        c.settimeout(3)
        assert c.recv(10) == b""                 # a clean close, not a reset
        took = time.monotonic() - t0
        assert took < limit, took
        c.close()


@pytest.mark.parametrize("iface,extra", KA_CASES, ids=KA_IDS)
def test_idle_keepalive_closed_on_stop(wsgi_server, iface, extra):
    """Connections idle after a request, and one that never sent anything,
    are closed at once on SIGTERM; with nothing in flight the master is
    gone within a second."""
    s = serve(wsgi_server, iface, *extra)
    socks = _keepalive_conns(s, 3)
    socks.append(s.connect())                    # connected, silent
    time.sleep(0.3)                              # idle
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    _closed_within(socks, t0, 0.5)
    assert s.proc.wait(5) == 0
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("iface,extra", KA_CASES, ids=KA_IDS)
def test_just_answered_keepalive_closed_on_stop(wsgi_server, iface, extra):
    """SIGTERM right after a response: the connection gets a short grace
    (its client may be sending the next request) but is still closed well
    within a second, and the master exits.

    The bound is 0.8 s, not 0.5 s: under ASGI the close waits for the
    worker's 0.5 s asyncio tick (see the report: it lands 0.25..0.75 s
    after the response)."""
    s = serve(wsgi_server, iface, *extra)
    socks = _keepalive_conns(s, 2)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    _closed_within(socks, t0, 0.8)
    assert s.proc.wait(5) == 0
    assert time.monotonic() - t0 < 1.3


@pytest.mark.parametrize("iface,extra", KA_CASES, ids=KA_IDS)
def test_keepalive_next_request_during_grace_is_served(wsgi_server, iface, extra):
    """A request sent on a keep-alive connection right as the stop begins
    is answered, not dropped; then the connection is closed.  (Whether the
    answer says "Connection: close" depends on whether the worker has got
    its SIGTERM from the master yet.)"""
    s = serve(wsgi_server, iface, *extra)
    (c,) = _keepalive_conns(s, 1)
    s.proc.send_signal(signal.SIGTERM)
    c.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body, rest = read_response(c)
    assert status == 200 and json.loads(body)["pid"] in s.worker_pids()
    c.settimeout(3)
    assert rest == b"" and c.recv(10) == b""
    c.close()
    assert s.proc.wait(5) == 0
