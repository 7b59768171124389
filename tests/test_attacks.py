"""Resource attacks against the real granc binary.

Each test runs one attack while a probe thread makes a fresh-connection
request every 0.5 s (2 s timeout) and records failures and latencies; the
worker's RSS (/proc/PID/status VmRSS) is taken before, during and after,
and its CPU time (/proc/PID/stat utime + stime) over the attack.  The
tests assert zero probe failures, bounded RSS growth and, for attacks that
only hold resources (idle connections, exhausted descriptors), that the
worker does not spin.

The figures are printed and also written to a JSON file (GRANC_ATTACK_FIGURES,
default /tmp/granc-attack-figures-UID.json), one entry per test, so that a
run without -s still leaves them for the summary in docs/reliability.md.

Slowloris and slow body use Debian's slowhttptest (tests/deps.sh).
"""
import json
import os
import random
import re
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import ASAN, Server, read_response

SLOW = 3 if ASAN else 1
MEM = 4 if ASAN else 1     # ASan's quarantine and shadow memory inflate RSS
MiB = 1 << 20
WSGI_PROBE = (b"/reason", 299)          # wsgi_app.py: a 2-byte answer
ASGI_PROBE = (b"/echo", 200)            # asgi_app.py: an empty echo
FIGURES = os.environ.get("GRANC_ATTACK_FIGURES",
                         f"/tmp/granc-attack-figures-{os.getuid()}.json")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HAVE_SLOWHTTPTEST = shutil.which("slowhttptest") is not None


# ---------------------------------------------------------------------------
# /proc measurements
# ---------------------------------------------------------------------------

def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mib(pid):
    return _status_kib(pid, "VmRSS") / 1024


def cpu_s(pid):
    """utime + stime of the whole process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nthreads(pid):
    return _status_kib(pid, "Threads")


def wait_for(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def record(name, figures):
    """Print one test's figures and merge them into the FIGURES file."""
    print(f"\n[attack figures] {name}: " + json.dumps(figures, sort_keys=True))
    try:
        with open(FIGURES) as f:
            allf = json.load(f)
    except (OSError, ValueError):
        allf = {}
    allf[name] = figures
    tmp = FIGURES + ".tmp"
    with open(tmp, "w") as f:
        json.dump(allf, f, indent=1, sort_keys=True)
    os.replace(tmp, FIGURES)


# ---------------------------------------------------------------------------
# the probe and the measurement frame
# ---------------------------------------------------------------------------

def probe_once(port, path, status, timeout=2.0):
    """One GET on a fresh connection, answered within timeout (total).
    Returns (latency in s, None) or (latency, reason of the failure)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("no response head in time")
                s.settimeout(left)
                b = s.recv(4096)
                if not b:
                    raise EOFError(f"closed after {len(data)} bytes")
                data += b
        got = int(data.split(b" ", 2)[1])
        if got != status:
            return time.monotonic() - t0, f"status {got}"
        return time.monotonic() - t0, None
    except (OSError, EOFError, ValueError, IndexError) as e:
        return time.monotonic() - t0, repr(e)


class Attack:
    """with Attack(name, server, probe) as a: ... -- probes every 0.5 s,
    samples RSS; on exit records the figures (see record()).  a.mark(tag)
    snapshots RSS and CPU at a point of the attack."""

    def __init__(self, name, server, probe=WSGI_PROBE, interval=0.5, timeout=2.0):
        self.name, self.server = name, server
        self.path, self.status = probe
        self.interval, self.timeout = interval, timeout
        self.pid = server.worker_pids()[0]
        self.results = []                 # (t since start, latency, error)
        self.rss_max = 0.0
        self.marks = {}
        self.extra = {}
        self._stop = threading.Event()

    def __enter__(self):
        for _ in range(3):                # warm the app's code paths up
            lat, err = probe_once(self.server.port, self.path, self.status, 5)
            assert err is None, f"the server fails before the attack: {err}"
        self.rss0 = rss_mib(self.pid)
        self.cpu0 = cpu_s(self.pid)
        self.fds0 = nfds(self.pid)
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.1):
            try:
                self.rss_max = max(self.rss_max, rss_mib(self.pid))
            except OSError:
                return

    def _run(self):
        k = 0
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            lat, err = probe_once(self.server.port, self.path, self.status, self.timeout)
            self.results.append((round(t, 2), lat, err))
            try:
                self.rss_max = max(self.rss_max, rss_mib(self.pid))
            except OSError:
                pass
            k += 1
            self._stop.wait(max(0.0, self.t0 + k * self.interval - time.monotonic()))

    def mark(self, tag):
        self.marks[tag] = {"t": round(time.monotonic() - self.t0, 2),
                           "rss_mib": round(rss_mib(self.pid), 1),
                           "cpu_s": round(cpu_s(self.pid) - self.cpu0, 3)}
        self.rss_max = max(self.rss_max, rss_mib(self.pid))
        return self.marks[tag]

    def stop_probe(self):
        self._stop.set()
        self._thread.join()
        self._sampler.join()

    def __exit__(self, *exc):
        self.stop_probe()
        self.wall = time.monotonic() - self.t0
        alive = os.path.exists(f"/proc/{self.pid}")
        self.rss1 = rss_mib(self.pid) if alive else None
        self.cpu = cpu_s(self.pid) - self.cpu0 if alive else None
        lats = [lat for _, lat, err in self.results if err is None]
        record(self.name, {
            "probes": len(self.results), "probe_failures": len(self.failures),
            "failures": self.failures[:5],
            "probe_max_ms": round(max(lats) * 1000, 1) if lats else None,
            "rss_before_mib": round(self.rss0, 1),
            "rss_after_mib": round(self.rss1, 1) if alive else None,
            "rss_peak_mib": round(max(self.rss_max, self.rss1 or 0), 1),
            "cpu_s": round(self.cpu, 3) if alive else None,
            "wall_s": round(self.wall, 1),
            "marks": self.marks, **self.extra})
        return False

    @property
    def failures(self):
        return [(t, err) for t, _, err in self.results if err is not None]

    def assert_probes_ok(self, min_probes=3):
        assert not self.failures, f"probe failures (t, error): {self.failures}"
        assert len(self.results) >= min_probes, self.results


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

class LimitedServer(Server):
    """granc under `prlimit --nofile=N:N` (the worker cannot raise it)."""

    def __init__(self, *a, nofile, **kw):
        super().__init__(*a, **kw)
        self.nofile = nofile

    def cmd(self):
        return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--"] + super().cmd()


def wsgi(*args):
    return Server("wsgi_app:app", *args)


def asgi(*args):
    return Server("asgi_app:app", *args, interface="asgi")


IFACES = {"wsgi": (wsgi, WSGI_PROBE), "asgi": (asgi, ASGI_PROBE)}


def _linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---------------------------------------------------------------------------
# slowloris and slow body: slowhttptest
# ---------------------------------------------------------------------------

def slowhttptest(tmp_path, url, mode, conns, rate, extra=()):
    """Run slowhttptest; return its CSV rows as dicts (one per second)."""
    prefix = str(tmp_path / "slowhttptest")
    cmd = ["slowhttptest", mode, "-c", str(conns), "-r", str(rate), "-i", "2",
           "-l", "40", "-p", "2", "-g", "-o", prefix, "-u", url, *extra]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
    out = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", p.stdout).decode("latin-1")
    assert p.returncode == 0, out[-2000:]
    with open(prefix + ".csv") as f:
        lines = [ln.strip().split(",") for ln in f if ln.strip()]
    head = lines[0]
    rows = [dict(zip(head, map(int, ln))) for ln in lines[1:]]
    ended = re.search(r"Exit status: *(.*)", out)
    return rows, ended.group(1).strip() if ended else "?"


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SLOWHTTPTEST, reason="slowhttptest not installed (tests/deps.sh)")
@pytest.mark.parametrize("mode,iface", [("-H", "wsgi"), ("-B", "wsgi"), ("-B", "asgi")],
                         ids=["slowloris-wsgi", "slowbody-wsgi", "slowbody-asgi"])
def test_slowhttptest(tmp_path, mode, iface):
    """1000 connections at 250/s (all open before the first times out) that
    trickle a head (-H) or a body (-B,
    Content-Length 4096: read ahead by the loop) every 2 s: the 5 s head
    timeout closes every one of them, and the probe never notices."""
    make, probe = IFACES[iface]
    with make("--http1-header-read-timeout", "5000", "--backlog", "2048") as srv:
        name = f"slowloris-{iface}" if mode == "-H" else f"slowbody-{iface}"
        path = "/reason" if mode == "-H" else "/echo"
        with Attack(name, srv, probe) as a:
            rows, ended = slowhttptest(tmp_path, srv.url + path, mode, 1000, 250)
            a.mark("end")
            a.extra.update(slowhttptest_peak_connected=max(r["Connected"] for r in rows),
                           slowhttptest_closed=rows[-1]["Closed"],
                           slowhttptest_seconds=rows[-1]["Seconds"],
                           slowhttptest_exit=ended)
        a.assert_probes_ok(10)
        # (nearly) all were held at once; the server closed every one of
        # them.  The CSV is sampled once a second, so its last row can miss
        # hundreds closed in the same second (seen: 685 of 1000): the exit
        # status decides, as slowhttptest says it only when none is open.
        assert max(r["Connected"] for r in rows) >= 900, rows
        assert "No open connections left" in ended, (ended, rows[-3:])
        assert rows[-1]["Seconds"] <= 5 + 5 + 5 * SLOW, rows[-1]
        # cheap: 1000 connections trickling are not work (< 0.15 CPU-s a second)
        assert a.cpu < 0.15 * a.wall, (a.cpu, a.wall)
        assert a.rss1 - a.rss0 < (16) * MEM, (a.rss0, a.rss1)
        assert a.rss_max - a.rss0 < (48) * MEM, (a.rss0, a.rss_max)


def _slow_bodies(srv, n, seconds):
    """n uploads that send 70 KB of a 1 MiB body at once -- past the 64 KiB
    the loop reads ahead, so the request reaches the application -- then
    one byte every 2 s."""
    socks = []
    try:
        for _ in range(n):
            s = srv.connect()
            s.sendall(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                      + b"a" * 70000)
            socks.append(s)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(2)
            for s in socks:
                s.send(b"a")
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
@pytest.mark.parametrize("iface", [
    pytest.param("wsgi", marks=pytest.mark.xfail(strict=True, reason=(
        "limitation (Granian's WSGIBody blocks a thread the same way): a WSGI "
        "request whose body outruns the 64 KiB read-ahead holds an application "
        "thread for as long as the client trickles (IO_TIMEOUT_MS is per read), "
        "so --blocking-threads slow uploads starve every other request"))),
    "asgi"])
def test_slow_body_past_read_ahead(iface):
    """Slow bodies that the loop cannot read ahead: ASGI waits for them in
    asyncio; WSGI with 4 threads and 8 such uploads has none left."""
    make, probe = IFACES[iface]
    args, n = (("--blocking-threads", "4"), 8) if iface == "wsgi" else ((), 100)
    with make(*args) as srv:
        with Attack(f"slowbody-past-readahead-{iface}", srv, probe) as a:
            _slow_bodies(srv, n, 6)
            a.extra.update(uploads=n, server_args=" ".join(args))
        a.assert_probes_ok(8)


# ---------------------------------------------------------------------------
# ~20,000 idle connections
# ---------------------------------------------------------------------------

def _nofile_target():
    """Raise our descriptor limit to the hard one; how many idle
    connections both sides can hold (granc inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    want = min(want, 1 << 20)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return min(20000, want - 500)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [
    "silent",
    "keepalive"])
def test_idle_connections(variant):
    """~20,000 connections that send nothing (or one request, then idle as
    keep-alive) are held at a small cost in memory and none in CPU.  The
    hard RLIMIT_NOFILE caps the count: both this process and the worker
    need one descriptor per connection."""
    n = _nofile_target()
    if n < 10000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]} "
                    f"allows only {n} connections (need 10,000+)")
    with wsgi("--backlog", "4096", "--http1-header-read-timeout", "60000") as srv:
        socks = []
        with Attack(f"idle-{variant}", srv) as a:
            pid = a.pid
            base = nfds(pid)
            t0 = time.monotonic()
            try:
                for i in range(0, n, 1000):
                    batch = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                             for _ in range(min(1000, n - i))]
                    socks += batch
                    if variant == "keepalive":
                        for s in batch:
                            s.sendall(b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
                        for s in batch:
                            st, _, body, rest = read_response(s)
                            assert (st, body, rest) == (299, b"ok", b"")
                    assert wait_for(lambda: nfds(pid) >= base + len(socks) - 50, 10), \
                        (nfds(pid), base, len(socks))
                setup = time.monotonic() - t0
                assert wait_for(lambda: nfds(pid) >= base + n - 3, 5), (nfds(pid), base, n)
                time.sleep(1.5)           # let the last batch settle (sweep runs each second)
                a.mark("open")
                time.sleep(4)
                held = a.mark("held")
                idle_cpu = held["cpu_s"] - a.marks["open"]["cpu_s"]
                threads = nthreads(pid)
            finally:
                for s in socks:
                    s.close()
            assert wait_for(lambda: nfds(pid) <= base + 5, 10), (nfds(pid), base)
            a.mark("closed")
            a.extra.update(connections=n, setup_s=round(setup, 1), idle_cpu_s_4s=round(idle_cpu, 3),
                           per_conn_kib=round((held["rss_mib"] - a.rss0) * 1024 / n, 2),
                           worker_threads=threads)
        a.assert_probes_ok(10)
        grow = held["rss_mib"] - a.rss0
        # granc's cost is a struct per connection (a buffer only while a
        # head is being read, then it goes back to a small stash): under
        # 2 KiB each, 20 MiB for 10,000 (issue 8's bound); ~0.9 measured
        assert grow < MEM * 20 * n / 10000, (a.rss0, held)
        # the burst too: buffers holding each connection for a second after
        # its request peaked at 143 MiB here for 19,500; now ~38
        peak = max(a.rss_max, held["rss_mib"]) - a.rss0
        assert peak < MEM * 30 * n / 10000, (a.rss0, a.rss_max)
        # 4 s of holding them: the once-a-second sweep, nothing else
        assert idle_cpu < 0.2, idle_cpu


# ---------------------------------------------------------------------------
# huge header blocks
# ---------------------------------------------------------------------------

BUF = 417792                              # --http1-buffer-size default


def _head_of(size):
    """A GET head of exactly `size` bytes: 80 headers of equal length."""
    start = b"GET /reason HTTP/1.1\r\nHost: x\r\n"
    k = 80
    room = size - len(start) - 2
    each = room // k
    lines = []
    for i in range(k):
        name = b"X-H%02d: " % i
        ln = each + (room - each * k if i == k - 1 else 0)
        lines.append(name + b"a" * (ln - len(name) - 2) + b"\r\n")
    head = start + b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


def test_huge_head_at_the_default_buffer_size():
    with wsgi() as srv:
        for size, status in ((BUF, 299), (BUF + 1, 431)):
            with srv.connect() as s:
                s.sendall(_head_of(size))
                st, _, _, _ = read_response(s)
                assert st == status, (size, st)


@pytest.mark.slow
def test_many_huge_heads_slowly():
    """200 connections each send a ~400 KB head (just under the buffer
    size) in 10 KB pieces over ~4 s, then half of them one more header
    line (431).  Each costs at most one --http1-buffer-size buffer while
    it is read, given back afterwards."""
    nconn, piece = 200, 10000
    with wsgi("--backlog", "1024") as srv:
        with Attack("huge-heads", srv) as a:
            heads = [_head_of(BUF - 1000 - 80 * (i % 2))[:-2] for i in range(nconn)]
            socks = [srv.connect() for _ in range(nconn)]
            for off in range(0, len(heads[0]), piece):
                for s, h in zip(socks, heads):
                    s.sendall(h[off:off + piece])
                time.sleep(0.1)
            a.mark("heads-sent")
            for i, (s, h) in enumerate(zip(socks, heads)):
                # odd: the end of the head; even: one more line over the cap
                s.sendall(b"\r\n" if i % 2 else b"X-Over: " + b"b" * 2000 + b"\r\n\r\n")
            statuses = []
            for s in socks:
                statuses.append(read_response(s)[0])
                s.close()
            a.mark("answered")
            time.sleep(1.5)
            a.mark("settled")
        a.assert_probes_ok(5)
        assert statuses == [431 if i % 2 == 0 else 299 for i in range(nconn)]
        # while being read: at most one 408 KiB buffer per connection
        assert a.rss_max - a.rss0 < (nconn * BUF / MiB * 1.25 + 16) * MEM, (a.rss0, a.rss_max)
        # afterwards most of it is back
        assert a.marks["settled"]["rss_mib"] - a.rss0 < (24) * MEM, (a.rss0, a.marks)


# ---------------------------------------------------------------------------
# 10,000 pipelined requests in one write
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_pipeline_10000_in_one_write(iface):
    """All 10,000 responses arrive on that connection, in order (each is a
    404 naming its own path), while the probe is served; the client reads
    as they come and granc buffers none of them up."""
    make, probe = IFACES[iface]
    n = 10000
    with make() as srv:
        with Attack(f"pipeline-{iface}", srv, probe) as a:
            data = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
            s = srv.connect(timeout=20)
            sender = threading.Thread(target=s.sendall, args=(data,))
            t0 = time.monotonic()
            sender.start()
            time.sleep(1)                 # not reading yet: granc must wait
            a.mark("unread-1s")
            buf, got = b"", 0
            try:
                for i in range(n):
                    st, _, body, buf = read_response(s, buf)
                    assert st == 404, (i, st)
                    assert (b"/p/%d" % i) in body and (b"/p/%d" % (i + 1)) not in body, (i, body)
                    got += 1
            finally:
                sender.join()
                elapsed = time.monotonic() - t0
                s.close()
            a.extra.update(requests=n, received=got, bytes_sent=len(data),
                           seconds=round(elapsed, 2), req_per_s=round(n / elapsed))
        assert got == n
        a.assert_probes_ok(1)
        assert a.rss_max - a.rss0 < (16) * MEM, (a.rss0, a.rss_max)


# ---------------------------------------------------------------------------
# a slow reader of a 256 MiB response
# ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_slow_reader_256mib(iface):
    """GET a 256 MiB streamed response, read ~1 MiB/s for 10 s, then at
    full speed: granc holds at most a chunk or two of it at any time."""
    make, probe = IFACES[iface]
    total = 256 * MiB
    path = (b"/stream?n=4096&size=65536" if iface == "wsgi"
            else b"/big?total=%d&chunk=65536" % total)
    with make() as srv:
        with Attack(f"slow-reader-{iface}", srv, probe) as a:
            s = srv.connect(timeout=30)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, buf = buf.split(b"\r\n\r\n", 1)
            assert b" 200 " in head.split(b"\r\n")[0], head
            chunked = b"transfer-encoding: chunked" in head.lower()
            got = len(buf)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:             # ~1 MiB/s
                b = s.recv(32768)
                assert b, "closed early"
                got += len(b)
                time.sleep(len(b) / MiB)
            slow_got = got
            a.mark("slow-phase-end")
            t1 = time.monotonic()
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                got += len(b)
            fast = time.monotonic() - t1
            s.close()
            a.extra.update(slow_phase_bytes=slow_got, fast_phase_s=round(fast, 2))
        a.assert_probes_ok(15)
        # the body (plus chunk framing when chunked) arrived whole
        assert got >= total and (chunked or got == total), got
        assert a.rss_max - a.rss0 < (64) * MEM, (a.rss0, a.rss_max)


# ---------------------------------------------------------------------------
# clients that reset mid-upload
# ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("iface", ["wsgi", "asgi"])
def test_reset_mid_upload(iface):
    """50 clients start a 100 MiB PUT and reset (SO_LINGER 0, close) after
    a random part of it -- within the head, within the read-ahead room,
    or megabytes in: the worker survives, every descriptor is given back
    and the memory comes back near its baseline."""
    make, probe = IFACES[iface]
    rnd = random.Random(1234)
    cuts = ([rnd.randrange(0, 60) for _ in range(5)]                   # in the head
            + [rnd.randrange(100, 60000) for _ in range(10)]           # read-ahead room
            + [rnd.randrange(100_000, 8 * MiB) for _ in range(35)])    # the app reads
    rnd.shuffle(cuts)
    head = b"PUT /digest HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (100 * MiB)
    block = b"u" * 65536

    pauses = [rnd.random() * 0.2 for _ in cuts]

    def client(cut, pause):
        s = srv.connect(timeout=20)
        try:
            if cut < 60:
                s.sendall(head[:cut])
            else:
                s.sendall(head)
                left = cut
                while left > 0:
                    k = min(left, len(block))
                    s.sendall(block[:k])
                    left -= k
            time.sleep(pause)
        finally:
            _linger0(s)
            s.close()

    with make() as srv:
        with Attack(f"reset-upload-{iface}", srv, probe) as a:
            pid = a.pid
            fds0 = a.fds0
            errors = []

            def run(jobs):
                for cut, pause in jobs:
                    try:
                        client(cut, pause)
                    except OSError as e:       # the server may have cut it first
                        errors.append(repr(e))
            threads = [threading.Thread(target=run, args=(list(zip(cuts, pauses))[i::10],)) for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            a.mark("all-reset")
            back = wait_for(lambda: nfds(pid) <= fds0, 5 * SLOW)
            time.sleep(1.5)
            a.mark("settled")
            log = srv.log()
            fds1 = nfds(pid)
            a.extra.update(clients=len(cuts), sent_mib=round(sum(cuts) / MiB, 1),
                           fds_before=fds0, fds_after=fds1, client_errors=len(errors),
                           app_saw_disconnect=log.count("client disconnected"))
        assert srv.proc.poll() is None and srv.worker_pids() == [pid]
        a.assert_probes_ok(3)
        assert back, f"descriptors leaked: {fds0} before, {fds1} after"
        assert a.marks["settled"]["rss_mib"] - a.rss0 < (16) * MEM, (a.rss0, a.marks)
        assert a.rss_max - a.rss0 < (64) * MEM, (a.rss0, a.rss_max)
        assert "Segmentation" not in log and "Fatal Python" not in log, log[-3000:]


# ---------------------------------------------------------------------------
# descriptors exhausted (EMFILE)
# ---------------------------------------------------------------------------

@pytest.mark.slow
def test_emfile_pauses_then_recovers():
    """Under RLIMIT_NOFILE 128, 300 idle connections exhaust the worker's
    descriptors: accept fails with EMFILE, the worker logs it and pauses
    accepting rather than spin on a listener that stays readable, keeps
    serving the connections it has, and accepts again within ~2 s once
    descriptors are free."""
    srv = LimitedServer("wsgi_app:app", nofile=128)
    with srv:
        pid = srv.worker_pids()[0]
        with Attack("emfile", srv) as a:
            a.stop_probe()               # nothing new can be served for a while
            # a keep-alive connection made before: it must keep being served
            ka = srv.connect()
            ka.sendall(b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(ka)[0] == 299
            socks = []
            try:
                for _ in range(300):
                    socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
                assert wait_for(lambda: "pausing accepts" in srv.log(), 5), srv.log()[-2000:]
                held_fds = nfds(pid)
                c0 = cpu_s(pid)
                time.sleep(5)
                spin_cpu = cpu_s(pid) - c0
                a.mark("exhausted")
                ka.sendall(b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
                st, _, body, _ = read_response(ka)
                assert (st, body) == (299, b"ok")
                ka.close()
            finally:
                for s in socks:
                    s.close()
            t_free = time.monotonic()
            # the next probe succeeds within ~2 s (one sweep to resume accepts)
            while True:
                lat, err = probe_once(srv.port, b"/reason", 299, 2.0)
                if err is None:
                    break
                assert time.monotonic() - t_free < 4, err
            recovered = time.monotonic() - t_free
            a.mark("recovered")
            # and the server then serves as before
            for _ in range(6):
                lat, err = probe_once(srv.port, b"/reason", 299, 2.0)
                a.results.append((round(time.monotonic() - a.t0, 2), lat, err))
                time.sleep(0.5)
            warnings = srv.log().count("pausing accepts")
            a.extra.update(nofile=128, fds_held=held_fds, idle_cpu_s_5s=round(spin_cpu, 3),
                           recovered_s=round(recovered, 2), pause_warnings=warnings)
        a.assert_probes_ok(6)
        assert recovered < 2.5, recovered
        assert spin_cpu < 0.25, spin_cpu
        # about one warning per second of exhaustion, not one per wakeup
        assert 1 <= warnings <= 12, warnings
