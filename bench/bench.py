#!/usr/bin/python3
"""Benchmark granc against its peers, side by side, in one run.

    bench/bench.py [--case NAME[,NAME...] | --all] [--seconds S] [--rounds N]
                   [--conns C] [--granc PATH] [SERVER...]

Every server runs one worker pinned to CPU 0 (taskset); the client (wrk
-t1, curl, or a Python client) runs on CPU 1, and so does this script.
Each throughput case warms every server up, then runs ROUNDS times,
interleaved across servers; tables show medians.  "req/CPU-s" divides the
requests served by the CPU time the server's processes used during the run
(from /proc), which still separates servers when the client on one core is
the bottleneck.  Latency (p50, p99, max) comes from an h2load --h1 run after
wrk's, every request counted: wrk's own p99 is inflated by its coordinated-
omission correction (see latency() below).  RSS and PSS (/proc/PID/smaps_rollup) are the whole server:
master and workers; "worker RSS" is its largest process.  Every run first
prints a footprint line: granc's own code stripped (tests/granc-shared),
the binary run with the libraries it loads beyond libc, and its start-up
to a first response.

Cases (--case NAME; no --case runs the main ones: wsgi, asgi, asgi-echo, ws,
https, startup; --all runs every one in turn, about 20 minutes on 2 cores).
Measured runs last 5 s (3 s with --all), 3 rounds, after a warm-up.

  wsgi, asgi            hello world (13 B); nginx `return 200` is the ceiling
  wsgi-echo, asgi-echo  10 KiB POST echoed back (wrk + bench/post10k.lua)
  rsgi, rsgi-echo       hello world and 10 KiB echo as RSGI apps, beside granc's ASGI
  wsgi-64k, asgi-64k    64 KiB response (nginx: a 64 KiB static file)
  static-64k, static-1m a static file (--static-path-*) beside nginx's sendfile
  django-wsgi, -asgi    a small Django view answering JSON (apps/django_app.py)
  summary               granc's defaults beside uvicorn, uWSGI and nginx (hello, echo,
                        Django, p99 at -c64 and -c1024): the performance targets' table
  https                 ASGI hello world over TLS, keep-alive
  https-handshakes      the same with `Connection: close`: a handshake each
  ws                    WebSocket echo message rate (64 B text messages)
  upload                1 GiB streamed PUT (curl -T): MiB/s and peak RSS
  idle                  10,000 idle keep-alive connections: RSS before/after
  startup               exec to first successful response, median of 5
  conns                 granc and nginx, wrk -c64, -c256, -c1024: no fall-off
  spread                granc --workers 2: requests per worker (metrics)
  h2                    hello world, h2load: HTTP/1.1 (--h1 -c64 -m1) beside HTTP/2
                        h2c (-c64 -m1 and -c16 -m10), granc ASGI, WSGI pool and
                        WSGI --blocking-threads 1; hypercorn's HTTP/2 the peer
  h2-idle               2,000 idle HTTP/2 connections (preface and SETTINGS
                        exchanged) beside 2,000 idle HTTP/1.1 ones: RSS per connection
  h2-tls                ASGI hello world over TLS, HTTP/1.1 beside HTTP/2 by ALPN
"""
import argparse
import atexit
import os
import re
import resource
import select
import selectors
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
GRANC = os.environ.get("GRANC_BIN") or os.path.join(ROOT, "tests", "granc-test")
PY = "/usr/bin/python3"
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"
TMP = "/tmp/granc-bench"
MIB = 1024 * 1024

MAIN = ["wsgi", "asgi", "asgi-echo", "ws", "https", "startup"]


# ---------------------------------------------------------------- servers
#
# A server is a function (port, app) -> argv; the app ("module:attr", or a
# kind for nginx) comes last, so opts() can put more options before it.

def granc(iface, *extra):
    return lambda p, app: [GRANC, "--interface", iface, *extra, "--log-level", "warning",
                           "--port", str(p), app]


# The other link (bench/run builds it): the shared libpython, as `make
# STATIC_PYTHON=0` links it.  GRANC, the default build for Debian's python3,
# has libpython linked in, as Debian's own python3 that runs the Python peers.
GRANC_SHARED = os.path.join(ROOT, "tests", "granc-shared")


def shared_row(server, app):
    """granc's row (server) again, run by the shared-libpython binary."""
    if not os.path.exists(GRANC_SHARED):
        return {}
    return {"granc-shared": (lambda p, a: [GRANC_SHARED] + server(p, a)[1:], app)}


def opts(server, *extra):
    def cmd(p, app):
        argv = server(p, app)
        return argv[:-1] + list(extra) + argv[-1:]
    return cmd


def uwsgi(p, app):
    return ["uwsgi", "--plugin", "python3", "--http11-socket", f"127.0.0.1:{p}",
            "--processes", "1", "--disable-logging", "--single-interpreter",
            "--pythonpath", APPS, "--module", app]


def gunicorn(*extra):
    return lambda p, app: [PY, "-m", "gunicorn", "-w", "1", *extra, "-b", f"127.0.0.1:{p}", app]


def waitress(p, app):
    return ["waitress-serve", "--host", "127.0.0.1", "--port", str(p), "--threads", "4", app]


def uvicorn(*extra):
    return lambda p, app: [PY, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
                           *extra, "--no-access-log", "--log-level", "warning",
                           "--port", str(p), app]


def hypercorn(p, app):
    return [PY, "-m", "hypercorn", "--worker-class", "uvloop", "-b", f"127.0.0.1:{p}", app]


def daphne(p, app):
    return [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(p), app]


def certs():
    """A self-signed EC P-256 certificate for the HTTPS cases (made once)."""
    d = f"{TMP}-certs"
    if not os.path.exists(f"{d}/cert.pem"):
        os.makedirs(d, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{d}/key.pem",
                        "-out", f"{d}/cert.pem", "-days", "30", "-subj", "/CN=127.0.0.1"],
                       check=True, capture_output=True)
    return f"{d}/cert.pem", f"{d}/key.pem"


def nginx(tls=False):
    """nginx, one worker process, access log off: `return 200` with the
    hello-world body (app "hello"), a 64 KiB static file (app "64k"), or,
    for a request body, read and discarded (app "discard")."""
    def cmd(p, app):
        d = f"{TMP}-nginx/{p}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/64k", "wb") as f:
            f.write(b"x" * 65536)
        files = ""
        if app == "files":                  # the static-file cases: nginx as it
            static_files(f"{d}/static")     # serves files, with sendfile
            loc = "default_type application/octet-stream; index static/64k;"   # / for readiness
            files = "sendfile on;"
        elif app == "64k":
            loc = "default_type application/octet-stream; try_files /64k =404;"
        else:
            loc = 'default_type text/plain; return 200 "Hello, world!";'
        tls_conf = ""
        if tls:
            cert, key = certs()
            tls_conf = f"ssl_certificate {cert}; ssl_certificate_key {key};"
        conf = f"""
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 30000;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    {files}
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    client_max_body_size 0;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{p}{" ssl" if tls else ""};
        root {d};
        {tls_conf}
        location / {{ {loc} }}
    }}
}}
"""
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(conf)
        return ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"]
    return cmd


def static_files(d):
    """The files of the static-file cases, 64 KiB and 1 MiB, in d."""
    os.makedirs(d, exist_ok=True)
    for name, size in (("64k", 65536), ("1m", MIB)):
        if not os.path.exists(f"{d}/{name}") or os.path.getsize(f"{d}/{name}") != size:
            with open(f"{d}/{name}", "wb") as f:
                f.write(bytes(range(256)) * (size // 256))


def granc_files(p, app):
    """granc with its defaults serving the static-file cases' files under
    /static (wrk asks for /static/NAME; the app is never called)."""
    d = f"{TMP}-static"
    static_files(d)
    return [GRANC, "--interface", "wsgi", "--log-level", "warning", "--port", str(p),
            "--static-path-mount", d, app]


WSGI = {
    "granc": granc("wsgi", "--blocking-threads", "1"),
    "granc-pool": granc("wsgi"),
    "uwsgi": uwsgi,
    "gunicorn-sync": gunicorn(),
    "gunicorn-gthread": gunicorn("-k", "gthread", "--threads", "4"),
    "waitress": waitress,
}

ASGI = {
    "granc": granc("asginl", "--loop", "uvloop"),
    "granc-asyncio": granc("asginl", "--loop", "asyncio"),
    "uvicorn-httptools": uvicorn(),
    "hypercorn": hypercorn,
    "daphne": daphne,
}

WS = {
    "granc": granc("asginl", "--loop", "uvloop"),
    "uvicorn-websockets": lambda p, app: [PY, "-m", "uvicorn", "--loop", "uvloop", "--ws",
                                          "websockets", "--no-access-log", "--log-level",
                                          "warning", "--port", str(p), app],
    "hypercorn": hypercorn,
    "daphne": daphne,
}


def https_servers():
    cert, key = certs()
    return {
        "granc": (opts(ASGI["granc"], "--ssl-certificate", cert, "--ssl-keyfile", key),
                  "hello_asgi:app"),
        "uvicorn-httptools": (opts(ASGI["uvicorn-httptools"], "--ssl-certfile", cert,
                                   "--ssl-keyfile", key), "hello_asgi:app"),
        "hypercorn": (opts(hypercorn, "--certfile", cert, "--keyfile", key), "hello_asgi:app"),
        "nginx": (nginx(tls=True), "hello"),
    }


def family(servers, app, skip=(), prefix=""):
    return {prefix + n: (s, app) for n, s in servers.items() if n not in skip}


NGINX_NOTE = "nginx: `return 200` in C, no application: the ceiling for any server on this core"

HYPERCORN_NOTE = ("hypercorn 0.13 closes a keep-alive connection when the app answers without "
                  "calling receive(), as this app does: wrk reconnects, and counts read errors")

SHARED_NOTE = ("granc-shared: the same granc linked with the shared libpython (`make "
               "STATIC_PYTHON=0`); granc is the default build for Debian's python3: "
               "libpython linked in, not position-independent, as in that python3, which "
               "runs the Python peers")

# The "http" cases: wrk against each server.
HTTP = {
    "wsgi": dict(title="WSGI hello world (13 B)",
                 servers=lambda: {**family(WSGI, "hello_wsgi:app"), "nginx": (nginx(), "hello")}),
    "asgi": dict(title="ASGI hello world (13 B)",
                 servers=lambda: {**family(ASGI, "hello_asgi:app"), "nginx": (nginx(), "hello")},
                 note=HYPERCORN_NOTE),
    "wsgi-echo": dict(title="WSGI 10 KiB POST echo", script="post10k.lua",
                      servers=lambda: family(WSGI, "echo_wsgi:app")),
    "asgi-echo": dict(title="ASGI 10 KiB POST echo", script="post10k.lua",
                      servers=lambda: family(ASGI, "echo_asgi:app")),
    "wsgi-64k": dict(title="WSGI 64 KiB response",
                     servers=lambda: {**family(WSGI, "big_wsgi:app"), "nginx": (nginx(), "64k")}),
    "asgi-64k": dict(title="ASGI 64 KiB response",
                     servers=lambda: {**family(ASGI, "big_asgi:app", skip={"granc-asyncio"}),
                                      "nginx": (nginx(), "64k")},
                     note=HYPERCORN_NOTE),
    "django-wsgi": dict(title="Django JSON view, WSGI (apps/django_app.py)",
                        servers=lambda: {**family(WSGI, "django_app:wsgi"),
                                         **shared_row(WSGI["granc"], "django_app:wsgi")},
                        note=SHARED_NOTE),
    "django-asgi": dict(title="Django JSON view, ASGI (apps/django_app.py; sync view)",
                        servers=lambda: {**family(ASGI, "django_app:asgi", skip={"granc-asyncio"}),
                                         **shared_row(ASGI["granc"], "django_app:asgi")},
                        note=SHARED_NOTE),
    "rsgi": dict(title="RSGI hello world (13 B), beside granc's ASGI",
                 servers=lambda: {"granc-rsgi": (granc("rsgi", "--loop", "uvloop"), "hello_rsgi:app"),
                                  "granc-asgi": (ASGI["granc"], "hello_asgi:app")}),
    "rsgi-echo": dict(title="RSGI 10 KiB POST echo, beside granc's ASGI", script="post10k.lua",
                      servers=lambda: {"granc-rsgi": (granc("rsgi", "--loop", "uvloop"),
                                                      "echo_rsgi:app"),
                                       "granc-asgi": (ASGI["granc"], "echo_asgi:app")}),
    "static-64k": dict(title="a 64 KiB static file (GET /static/64k), before any Python",
                       path="/static/64k",
                       servers=lambda: {"granc": (granc_files, "hello_wsgi:app"),
                                        "nginx": (nginx(), "files")},
                       note="nginx: the same file under its root, `sendfile on`"),
    "static-1m": dict(title="a 1 MiB static file (GET /static/1m), before any Python",
                      path="/static/1m",
                      servers=lambda: {"granc": (granc_files, "hello_wsgi:app"),
                                       "nginx": (nginx(), "files")},
                      note="nginx: the same file under its root, `sendfile on`"),
    "https": dict(title="HTTPS ASGI hello world, keep-alive (EC P-256)", scheme="https",
                  servers=https_servers, note=HYPERCORN_NOTE),
    "https-handshakes": dict(title="HTTPS ASGI hello world, `Connection: close` "
                                   "(a TLS handshake per request)", scheme="https",
                             headers=["-H", "Connection: close"], servers=https_servers),
}

CASES = list(HTTP) + ["summary", "ws", "upload", "idle", "startup", "conns", "spread", "h2", "h2-idle",
                      "h2-tls"]


# ---------------------------------------------------------------- /proc

def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])    # utime + stime
        except OSError:
            pass
    return total / TICK


def _proc_kib(pids, path, field):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/{path}") as f:
                total += int(re.search(field + r":\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def rss_kib(pids):
    return _proc_kib(pids, "status", "VmRSS")


def top_rss_kib(pids):
    """The largest single process: a worker's own RSS, what a memory limit
    per worker would see."""
    return max((rss_kib([p]) for p in pids), default=0)


def pss_kib(pids):
    return _proc_kib(pids, "smaps_rollup", "Pss")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- running a server

LIVE = set()


@atexit.register
def _cleanup():
    for s in list(LIVE):
        s.stop()


def probe(port, scheme="http", timeout=1.0):
    """True if GET / answers 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = s.recv(100)
        return head.startswith(b"HTTP/1.") and head[9:12] == b"200"


class Server:
    def __init__(self, name, spec, scheme="http", cpus=SERVER_CPU, log=False):
        cmd, app = spec
        self.name, self.scheme = name, scheme
        self.port = free_port()
        argv = cmd(self.port, app)
        self.log = tempfile.TemporaryFile() if log else subprocess.DEVNULL
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", cpus] + argv, cwd=APPS,
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        LIVE.add(self)

    def ready(self, timeout=30, interval=0.005):
        """Wait for a first 200; return the seconds since exec."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"exited with status {self.proc.returncode}")
            try:
                if probe(self.port, self.scheme):
                    return time.monotonic() - self.t0
            except (OSError, ssl.SSLError):
                pass
            time.sleep(interval)
        self.stop()
        raise RuntimeError(f"no 200 within {timeout} s")

    def pids(self):
        return tree(self.proc.pid)

    def logtext(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} still running 10 s after SIGINT: killed")
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)      # stragglers (workers)
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(f"{TMP}-nginx/{self.port}", ignore_errors=True)
        LIVE.discard(self)


def started(name, spec, **kw):
    s = Server(name, spec, **kw)
    s.ready()
    return s


# ---------------------------------------------------------------- wrk

def wrk(port, seconds, conns, scheme="http", extra=(), path="/"):
    out = subprocess.run(cwd=ROOT, args=["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}",
                          f"-d{seconds}s", "--latency", *extra,
                          f"{scheme}://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout

    def unit(v, u):
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError("wrk: " + (out.strip().splitlines() or ["no output"])[-1])
    reqs = int(m.group(1))
    if reqs == 0 and os.environ.get("BENCH_DEBUG"):
        log(f"wrk, 0 requests:\n{out}")
    lat = dict(re.findall(r"\s(50|99)%\s+([\d.]+\w+)", out))
    ms = {k: unit(*re.match(r"([\d.]+)(\w+)", v).groups()) for k, v in lat.items()}
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, ms.get("50", 0), ms.get("99", 0), errs + (int(non2xx.group(1)) if non2xx else 0)


def warmup(seconds):
    return 1 if seconds <= 3 else 2


# Latency comes from a second client, not from wrk.  wrk 4.1 "corrects" its
# latency histogram for coordinated omission after the run (stats_correct):
# each sample longer than twice the mean interval between one connection's
# requests is copied again and again, one interval shorter each time, down to
# that interval.  One 200 ms stall of this shared VM at -c1 and 60,000
# requests in 3 s (50 µs apart) adds 4,000 samples between 0.1 and 200 ms:
# wrk then prints a p99 of about 170 ms for a run where 59,999 requests took
# 50 µs.  Its p99 is a measure of the single longest stall of the run, not of
# the requests.  h2load --h1 (nghttp2-client) at the same -c logs every
# request's time (--log-file), uncorrected: p50, p99 and max below are those.

def latency(port, seconds, conns, scheme="http", extra=(), path="/"):
    """One h2load --h1 run at -c conns: (p50, p99, max ms over every request,
    requests).  None where h2load cannot send what wrk sends (a request
    header that closes the connection: h2load spins on it)."""
    args = []
    for i, x in enumerate(extra):
        if x == "-s":                       # bench/post10k.lua: its POST, as h2load sends it
            body = os.path.join(TMP + "-post10k")
            if not os.path.exists(body):
                with open(body, "wb") as f:
                    f.write(b"x" * 10240)
            args += ["-d", body, "-H", "content-type: application/octet-stream"]
        elif x == "-H":
            return None
    fd, logf = tempfile.mkstemp(prefix="bench-h2load-")
    os.close(fd)
    try:
        subprocess.run(["taskset", "-c", CLIENT_CPU, "h2load", "--h1", "-c", str(conns),
                        "-D", str(seconds), *args, f"--log-file={logf}",
                        f"{scheme}://127.0.0.1:{port}{path}"],
                       capture_output=True, timeout=seconds + 60)
        with open(logf) as f:
            us = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") == 2)
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    finally:
        os.unlink(logf)
    if not us:
        return None

    def pct(p):                              # nearest rank
        return us[min(len(us) - 1, max(0, -(-len(us) * p // 100) - 1))] / 1000
    return pct(50), pct(99), us[-1] / 1000, len(us)


# Stalls: a sleeper pinned on each CPU (5 ms sleeps) notes every wake-up 20 ms
# or more late.  On the shared 2-vCPU VM of docs/performance.md a whole vCPU
# stops for 20-600 ms now and then, whatever runs on it (the host's doing), and
# other processes on the machine take the CPUs too; a run that met a stall
# shows it in its max, and the table names it.

STALL_SCRIPT = """
import sys, time
sl, thr = 0.005, 0.020
last = time.monotonic()
while True:
    time.sleep(sl)
    t = time.monotonic()
    if t - last - sl >= thr:
        print(f"{t:.4f} {(t - last - sl) * 1000:.0f}", flush=True)
    last = t
"""


class StallMeter:
    def __init__(self):
        self.events, self.procs = [], []
        for cpu in (SERVER_CPU, CLIENT_CPU):
            p = subprocess.Popen(["taskset", "-c", cpu, PY, "-c", STALL_SCRIPT],
                                 stdout=subprocess.PIPE, text=True, start_new_session=True)
            self.procs.append(p)
            threading.Thread(target=self._read, args=(p, cpu), daemon=True).start()
        atexit.register(self.stop)

    def _read(self, p, cpu):
        for line in p.stdout:
            t, ms = line.split()
            self.events.append((float(t), int(ms), cpu))

    def between(self, t0, t1):
        """Stalls that ended in [t0, t1]: (count, longest ms)."""
        ms = [m for t, m, _ in list(self.events) if t0 <= t <= t1]
        return len(ms), max(ms, default=0)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


METER = None


def stall_meter():
    global METER
    if METER is None:
        METER = StallMeter()
    return METER


def measure(srv, seconds, conns, extra=(), path="/"):
    """One wrk run against a started server, then one h2load --h1 run for
    latency: req/s, req/CPU-s (wrk), p50, p99 (h2load), errors (wrk), RSS
    KiB, PSS KiB, largest process's RSS KiB, max ms (h2load), host stalls
    and the longest in ms during the h2load run."""
    meter = stall_meter()
    wrk(srv.port, warmup(seconds), conns, srv.scheme, extra, path)
    pids = srv.pids()
    c0 = cpu_seconds(pids)
    reqs, _, _, errs = wrk(srv.port, seconds, conns, srv.scheme, extra, path)
    cpu = cpu_seconds(pids) - c0
    pids = srv.pids()
    rss, pss, top = rss_kib(pids), pss_kib(pids), top_rss_kib(pids)
    t0 = time.monotonic()
    lat = latency(srv.port, seconds, conns, srv.scheme, extra, path)
    nstall, longest = meter.between(t0, time.monotonic())
    p50, p99, worst = lat[:3] if lat else (float("nan"),) * 3
    return [reqs / seconds, reqs / cpu if cpu else 0, p50, p99, errs,
            rss, pss, top, worst, nstall, longest]


def lat_cols(rows):
    """p50, p99 (medians of the rounds), the rounds' p99 min–max, the
    longest request of all rounds."""
    v = [r for r in rows if r[3] == r[3]]            # not NaN: measured
    if not v:
        return "– | – | – | –"
    return (f"{statistics.median(r[2] for r in v):.2f} | {statistics.median(r[3] for r in v):.2f}"
            f" | {spread(v, 3, '{:.2f}')} | {max(r[8] for r in v):.1f}")


def stall_lines(results):
    """The rounds whose latency run met host stalls (both CPUs watched)."""
    out = []
    for n, rs in results.items():
        hit = [f"round {i + 1}: {r[9]} (longest {r[10]} ms)" for i, r in enumerate(rs) if r[9]]
        if hit:
            out.append(f"- {n}: {'; '.join(hit)}")
    if out:
        print("\nstalls during the latency runs (a sleeper pinned on each CPU woke ≥ 20 ms "
              "late: the host stopped the vCPU, or other processes took it): they are in "
              "those rounds' max, and in their p99 when long or many")
        print("\n".join(out))


def p99_ratios(results, ref="uvicorn-httptools", label=""):
    """p99 of each granc row over the reference peer's, round by round
    (both ran in the same interleaved round)."""
    if ref not in results:
        return
    lines = []
    for n, rs in results.items():
        if n.startswith("granc") and rs:
            q = [f"{a[3] / b[3]:.2f}" for a, b in zip(rs, results[ref]) if b[3] == b[3] and b[3]]
            if q:
                lines.append(f"- {n}: {', '.join(q)}")
    if lines:
        print(f"\np99, granc / {ref}{label}, each round (h2load --h1):")
        print("\n".join(lines))


def pick(servers, wanted):
    """The servers named, in the case's order; a name the case lacks picks
    its variants ("granc": granc-wsgi and granc-asgi; "uvicorn")."""
    if not wanted:
        return servers
    keep = set()
    for w in wanted:
        keep |= {w} if w in servers else {n for n in servers if n.startswith(w + "-")}
    return {n: s for n, s in servers.items() if n in keep}


def stalls(results):
    """Name the runs that served nothing: a server that stalled for the whole
    run (the medians hide a single one)."""
    for n, rs in results.items():
        bad = [str(i + 1) for i, r in enumerate(rs) if not r[0]]
        if bad:
            print(f"- {n}: no request served in round(s) {', '.join(bad)}: a stall")


def failed_lines(failed):
    for n, why in failed.items():
        print(f"- {n}: not measured ({why})")


def ratios(med, ref="granc", what="req/s; req/CPU-s", ceiling=("nginx",)):
    if ref not in med:
        return
    g = med[ref]
    lines = []
    for n, m in med.items():
        if n != ref and m[0] and m[1]:
            tag = " (ceiling)" if n in ceiling else ""
            lines.append(f"- {n}{tag}: {g[0] / m[0]:.2f}x; {g[1] / m[1]:.2f}x")
    if lines:
        print(f"\nratios, {ref} / peer ({what}):")
        print("\n".join(lines))


def mib(kib):
    return f"{kib / 1024:.1f}"


def spread(rows, i, fmt="{:.0f}"):
    """min–max of column i across the rounds, printed beside each median:
    on this machine one round can be far off the others."""
    v = [x[i] for x in rows]
    return f"{fmt.format(min(v))}–{fmt.format(max(v))}"


def case_http(name, a):
    c = HTTP[name]
    servers = pick(c["servers"](), a.servers)
    scheme = c.get("scheme", "http")
    extra = list(c.get("headers", []))
    if c.get("script"):
        extra += ["-s", os.path.join("bench", c["script"])]
    conns = a.conns or 64
    rounds = a.rounds or 3
    results, failed = interleave(name, servers, a.seconds, conns, rounds, extra,
                                 c.get("path", "/"), scheme)
    med = {n: [statistics.median(x[i] for x in r) for i in range(8)]
           for n, r in results.items()}
    print(f"\n### {name}: {c['title']}\n\nwrk -t1 -c{conns} -d{a.seconds}s"
          f"{' ' + shlex.join(extra) if extra else ''}, 1 worker on CPU {SERVER_CPU}, "
          f"wrk on CPU {CLIENT_CPU}, median of {rounds}; latency: h2load --h1 -c{conns} "
          f"-D{a.seconds} after wrk, every request (not wrk's corrected histogram)\n")
    print("| server | req/s | min–max | req/CPU-s | min–max | p50 ms | p99 ms | min–max | "
          "max ms | errors | RSS MiB | PSS MiB | worker RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, (rps, rpc, _, _, errs, rss, pss, top) in med.items():
        print(f"| {n} | {rps:.0f} | {spread(results[n], 0)} | {rpc:.0f} | "
              f"{spread(results[n], 1)} | {lat_cols(results[n])} | {errs:.0f} | "
              f"{mib(rss)} | {mib(pss)} | {mib(top)} |")
    ratios(med)
    p99_ratios(results)
    stall_lines(results)
    files = name.startswith("static")        # nginx serves the same file there
    if "nginx" in med and not files:
        print(f"\n{NGINX_NOTE}")
    if c.get("note") and (files or any(n.startswith("hypercorn") for n in med)):
        print(f"\n{c['note']}")
    stalls(results)
    failed_lines(failed)


# ---------------------------------------------------------------- summary

def interleave(label, servers, seconds, conns, rounds, extra=(), path="/", scheme="http"):
    """Rounds of wrk against each server in turn (a fresh server each
    round): {name: [measure() per round]}, {name: why it failed}."""
    results, failed = {n: [] for n in servers}, {}
    for rnd in range(rounds):
        for n, spec in servers.items():
            if n in failed:
                continue
            try:
                srv = started(n, spec, scheme=scheme)
            except RuntimeError as e:
                failed[n] = f"did not start: {e}"
                continue
            try:
                r = measure(srv, seconds, conns, extra, path)
            except RuntimeError as e:
                failed[n] = str(e)
                continue
            finally:
                srv.stop()
            results[n].append(r)
            log(f"{label} round {rnd + 1} {n}: {r[0]:.0f} req/s, {r[4]} errors")
    return {n: r for n, r in results.items() if r}, failed


# What a user gets first: granc as `granc --interface asgi|wsgi APP`, no
# other flag; the tuned rows after.  Each group is one interleaved run.
def summary_groups():
    post = ["-s", os.path.join("bench", "post10k.lua")]
    hello = {"granc-asgi": (granc("asgi"), "hello_asgi:app"),
             "granc-wsgi": (granc("wsgi"), "hello_wsgi:app"),
             "granc-wsgi-bt1": (WSGI["granc"], "hello_wsgi:app"),
             "granc-asginl-uvloop": (ASGI["granc"], "hello_asgi:app"),
             "uvicorn": (ASGI["uvicorn-httptools"], "hello_asgi:app"),
             "uwsgi": (uwsgi, "hello_wsgi:app"),
             "nginx": (nginx(), "hello")}
    return [
        ("hello", 64, [], hello),
        ("hello-c1024", 1024, [], {n: hello[n] for n in
                                   ("granc-asgi", "granc-wsgi", "granc-wsgi-bt1", "uvicorn")}),
        ("echo", 64, post, {"granc-asgi": (granc("asgi"), "echo_asgi:app"),
                            "uvicorn": (ASGI["uvicorn-httptools"], "echo_asgi:app")}),
        ("django", 64, [], {"granc-wsgi": (granc("wsgi"), "django_app:wsgi"),
                            "granc-wsgi-bt1": (WSGI["granc"], "django_app:wsgi"),
                            "uwsgi": (uwsgi, "django_app:wsgi"),
                            "granc-asgi": (granc("asgi"), "django_app:asgi"),
                            "uvicorn": (ASGI["uvicorn-httptools"], "django_app:asgi")}),
    ]


# (label, group, granc row, peer row, column, target ratio or None; for p99
# (column 3) the target is a ceiling: granc's p99 at most that times the peer's)
SUMMARY_ROWS = [
    ("ASGI hello, defaults", "hello", "granc-asgi", "nginx", 1, 0.9),
    ("ASGI hello, defaults", "hello", "granc-asgi", "uvicorn", 1, None),
    ("ASGI 10 KiB echo, defaults", "echo", "granc-asgi", "uvicorn", 1, 2.0),
    ("WSGI hello, defaults", "hello", "granc-wsgi", "nginx", 1, 0.9),
    ("WSGI hello, defaults", "hello", "granc-wsgi", "granc-wsgi-bt1", 1, 0.9),
    ("WSGI hello, defaults", "hello", "granc-wsgi", "uwsgi", 1, None),
    ("Django view, WSGI defaults", "django", "granc-wsgi", "uwsgi", 1, 1.5),
    ("Django view, WSGI defaults", "django", "granc-wsgi", "granc-wsgi-bt1", 1, 0.9),
    ("Django view, ASGI defaults", "django", "granc-asgi", "uvicorn", 1, 1.2),
    ("p99, ASGI hello -c64", "hello", "granc-asgi", "uvicorn", 3, 2.0),
    ("p99, WSGI hello -c64", "hello", "granc-wsgi", "uvicorn", 3, 2.0),
    ("p99, ASGI hello -c1024", "hello-c1024", "granc-asgi", "uvicorn", 3, 2.0),
    ("p99, WSGI hello -c1024", "hello-c1024", "granc-wsgi", "uvicorn", 3, 2.0),
    ("tuned: WSGI hello, --blocking-threads 1", "hello", "granc-wsgi-bt1", "nginx", 1, 0.95),
    ("tuned: ASGI hello, asginl + uvloop", "hello", "granc-asginl-uvloop", "nginx", 1, 0.9),
    ("tuned: p99, WSGI hello -c64, --blocking-threads 1", "hello", "granc-wsgi-bt1",
     "uvicorn", 3, 2.0),
    ("tuned: p99, WSGI hello -c1024, --blocking-threads 1", "hello-c1024", "granc-wsgi-bt1",
     "uvicorn", 3, 2.0),
]


def interpreter_floor_kib():
    """The RSS of Debian's python3 once asyncio and uvloop are imported: the
    floor under any ASGI worker (issue 23 bounds granc's at 4 MiB above it)."""
    code = ("import asyncio, re\ntry:\n    import uvloop\nexcept ImportError:\n    pass\n"
            "print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout
    return int(out) if out.strip().isdigit() else 0


def memory_rows(res):
    """The worker's RSS under the hello-world load (largest process, median
    of the rounds): ASGI against the interpreter's floor, WSGI against 12 MiB."""
    floor = interpreter_floor_kib()
    for n, bound, what in (("granc-asgi", floor + 4096, "≤ floor + 4 MiB"),
                           ("granc-wsgi", 12 * 1024, "≤ 12 MiB"),
                           ("granc-wsgi-bt1", 12 * 1024, "≤ 12 MiB")):
        if n not in res or (n == "granc-asgi" and not floor):
            continue
        top = statistics.median(r[7] for r in res[n])
        peer = f"python3 + asyncio, uvloop {mib(floor)} MiB" if n == "granc-asgi" else ""
        print(f"| worker RSS under load, {n} | {mib(top)} MiB ({spread(res[n], 7, '{:.0f}')} KiB) "
              f"| {peer} | | {what} | {'yes' if top <= bound else '**no**'} |")


def case_summary(name, a):
    """Issue 23's table: granc's defaults against the peers and nginx, per
    server CPU-second, each ratio taken round by round (round i of granc
    against round i of the peer, run next to it) and given as the median
    with the min–max across rounds."""
    rounds = a.rounds or 3
    data = {}
    for label, conns, extra, servers in summary_groups():
        servers = pick(servers, a.servers)
        data[label] = interleave(f"summary {label}", servers, a.seconds, conns, rounds, extra)
    print(f"\n### summary: granc's defaults beside the peers\n\n"
          f"wrk -t1 -c64 -d{a.seconds}s, 1 worker on CPU {SERVER_CPU}, "
          f"wrk on CPU {CLIENT_CPU}, {rounds} interleaved rounds; req/CPU-s medians "
          f"(min–max); p99 from h2load --h1 (-c64, and -c1024) after wrk, every request; "
          f"ratios round by round, median (min–max)\n")
    print("| case | granc | peer | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for label, group, g, p, col, target in SUMMARY_ROWS:
        res = data[group][0]
        if g not in res or p not in res:
            continue
        gr, pr = res[g], res[p]
        per = [x[col] / y[col] for x, y in zip(gr, pr)
               if y[col] and y[col] == y[col] and x[col] == x[col]]     # NaN: not measured
        if not per:
            continue
        unit = " ms" if col == 3 else ""
        fmt = "{:.2f}" if col == 3 else "{:.0f}"

        def cell(rows, n):
            return (f"{n} {fmt.format(statistics.median(r[col] for r in rows))}{unit} "
                    f"({spread(rows, col, fmt)})")
        ratio = f"{statistics.median(per):.2f}× ({min(per):.2f}–{max(per):.2f})"
        if target is None:
            goal, met = "", ""
        elif col == 3:          # a ceiling, in every round
            goal, met = f"≤ {target:g}× in every round", "yes" if max(per) <= target else "**no**"
        else:
            goal = f"≥ {target:g}×"
            met = "yes" if statistics.median(per) >= target else "**no**"
        print(f"| {label} | {cell(gr, g)} | {cell(pr, p)} | {ratio} | {goal} | {met} |")
    memory_rows(data["hello"][0])
    print(f"\n{NGINX_NOTE}. granc-asgi and granc-wsgi run with no flag but "
          "--interface (ASGI: --loop auto, uvloop when installed; WSGI: the default "
          "--blocking-threads); -bt1 is --blocking-threads 1; asginl-uvloop skips lifespan.")
    for label, (res, failed) in data.items():
        stall_lines(res)
        stalls(res)
        failed_lines(failed)


# ---------------------------------------------------------------- conns, spread

def case_conns(name, a):
    servers = pick({"granc-wsgi": (WSGI["granc"], "hello_wsgi:app"),
                    "granc-asgi": (ASGI["granc"], "hello_asgi:app"),
                    "uvicorn-httptools": (ASGI["uvicorn-httptools"], "hello_asgi:app"),
                    "nginx": (nginx(), "hello")},
                   a.servers or ["granc-wsgi", "granc-asgi", "nginx"])
    levels = [a.conns] if a.conns else [64, 256, 1024]
    rounds = a.rounds or 3
    results = {(n, c): [] for n in servers for c in levels}
    for rnd in range(rounds):
        for n, spec in servers.items():
            srv = started(n, spec)
            try:
                for c in levels:
                    r = measure(srv, a.seconds, c)
                    results[(n, c)].append(r)
                    log(f"conns round {rnd + 1} {n} -c{c}: {r[0]:.0f} req/s, {r[4]} errors")
            finally:
                srv.stop()
    med = {k: [statistics.median(x[i] for x in r) for i in range(8)] for k, r in results.items()}
    print(f"\n### conns: hello world as connections grow\n\nwrk -t1 -cN -d{a.seconds}s, "
          f"1 worker on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}, median of {rounds}; "
          f"each server runs every level in turn; latency: h2load --h1 -cN -D{a.seconds} "
          f"after wrk, every request\n")
    print("| server | connections | req/s | min–max | req/CPU-s | p50 ms | p99 ms | min–max | "
          "max ms | errors | RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, c), (rps, rpc, _, _, errs, rss, pss, _) in med.items():
        print(f"| {n} | {c} | {rps:.0f} | {spread(results[(n, c)], 0)} | {rpc:.0f} | "
              f"{lat_cols(results[(n, c)])} | {errs:.0f} | {mib(rss)} |")
    for c in levels:
        p99_ratios({n: results[(n, c)] for n in servers}, label=f" at -c{c}")
    stall_lines({f"{n} -c{c}": v for (n, c), v in results.items()})
    if len(levels) > 1:
        print(f"\nat -c{levels[-1]} / at -c{levels[0]}, req/s; req/CPU-s (nginx: what one "
              f"wrk thread and the kernel allow for {levels[-1]} connections):")
        for n in servers:
            lo, hi = med[(n, levels[0])], med[(n, levels[-1])]
            print(f"- {n}: {hi[0] / lo[0] if lo[0] else 0:.2f}; {hi[1] / lo[1] if lo[1] else 0:.2f}")


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
    out = {}
    for key, w, v in re.findall(r'^granian_(\w+)\{worker="(\d+)"\} (\d+)', text, re.M):
        out.setdefault(int(w), {})[key] = int(v)
    return out


def case_spread(name, a):
    servers = pick({"granc-asgi": (granc("asginl", "--loop", "uvloop"), "hello_asgi:app"),
                    "granc-wsgi": (granc("wsgi", "--blocking-threads", "1"), "hello_wsgi:app")},
                   a.servers)
    levels = [a.conns] if a.conns else [64, 1024]
    print(f"\n### spread: granc --workers 2, connections across workers\n\n"
          f"wrk -t1 -cN -d{a.seconds}s on CPU {CLIENT_CPU}; the server on any CPU; "
          f"per-worker counters from the metrics exporter, CPU from /proc\n")
    print("| server | connections | req/s | worker | conns handled | requests | share | CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for n, (cmd, app) in servers.items():
        spec = (opts(cmd, "--workers", "2", "--metrics", "--metrics-port", "0",
                     "--log-level", "info"), app)
        srv = Server(n, spec, cpus="0-1", log=True)
        try:
            srv.ready()
            time.sleep(0.3)
            logtext = srv.logtext()
            mport = int(re.search(r"Metrics exporter listening at: \S+:(\d+)", logtext).group(1))
            wpid = {int(w): int(p) for w, p in re.findall(r"worker-(\d+) with PID: (\d+)", logtext)}
            for c in levels:
                wrk(srv.port, warmup(a.seconds), c)
                m0 = metrics(mport)
                c0 = {w: cpu_seconds([p]) for w, p in wpid.items()}
                reqs, _, _, errs = wrk(srv.port, a.seconds, c)
                m1 = metrics(mport)
                cpu = {w: cpu_seconds([p]) - c0[w] for w, p in wpid.items()}
                d = {w: {k: m1[w][k] - m0.get(w, {}).get(k, 0) for k in m1[w]} for w in m1}
                total = sum(x["requests_handled"] for x in d.values()) or 1
                shares = []
                for w in sorted(d):
                    share = d[w]["requests_handled"] / total
                    shares.append(share)
                    print(f"| {n} | {c} | {reqs / a.seconds:.0f} | {w} | "
                          f"{d[w]['connections_handled']} | {d[w]['requests_handled']} | "
                          f"{share * 100:.1f} % | {cpu.get(w, 0):.2f} |")
                notes.append(f"- {n} -c{c}: smallest worker share {min(shares) * 100:.1f} % "
                             f"({len(shares)} workers, {errs} wrk errors)")
                log(f"spread {n} -c{c}: shares {[round(s * 100, 1) for s in shares]}")
        except (RuntimeError, AttributeError, OSError) as e:
            notes.append(f"- {n}: not measured ({e})")
        finally:
            srv.stop()
    print()
    print("\n".join(notes))


# ---------------------------------------------------------------- ws

WS_CLIENT = r'''
import asyncio, sys, time, websockets
url, conns, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def one(stop, counts, i):
    async with websockets.connect(url, compression=None) as c:
        msg = "x" * 64
        while time.monotonic() < stop:
            await c.send(msg)
            await c.recv()
            counts[i] += 1
async def main():
    counts = [0] * conns
    stop = time.monotonic() + seconds
    await asyncio.gather(*[one(stop, counts, i) for i in range(conns)])
    print(sum(counts))
asyncio.run(main())
'''


def ws_client(port, conns, seconds):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, PY, "-c", WS_CLIENT,
                          f"ws://127.0.0.1:{port}/", str(conns), str(seconds)],
                         capture_output=True, text=True)
    if not out.stdout.strip():
        raise RuntimeError("client: " + (out.stderr.strip().splitlines() or ["failed"])[-1])
    return int(out.stdout.strip())


def case_ws(name, a):
    servers = pick(family(WS, "ws_echo:app"), a.servers)
    conns = a.conns or 16
    rounds = a.rounds or 3
    results, failed = {n: [] for n in servers}, {}
    for rnd in range(rounds):
        for n, spec in servers.items():
            if n in failed:
                continue
            try:
                srv = started(n, spec)
            except RuntimeError as e:
                failed[n] = f"did not start: {e}"
                continue
            try:
                ws_client(srv.port, conns, 1)                     # warm-up
                pids = srv.pids()
                c0 = cpu_seconds(pids)
                msgs = ws_client(srv.port, conns, a.seconds)
                cpu = cpu_seconds(pids) - c0
                pids = srv.pids()
                results[n].append((msgs / a.seconds, msgs / cpu if cpu else 0,
                                   rss_kib(pids), pss_kib(pids)))
                log(f"ws round {rnd + 1} {n}: {msgs / a.seconds:.0f} msg/s")
            except RuntimeError as e:
                failed[n] = str(e)
            finally:
                srv.stop()
    med = {n: [statistics.median(x[i] for x in r) for i in range(4)]
           for n, r in results.items() if r}
    print(f"\n### ws: WebSocket echo, 64 B text messages\n\n{conns} connections of a Python "
          f"`websockets` client on CPU {CLIENT_CPU}, {a.seconds} s, 1 worker on CPU "
          f"{SERVER_CPU}, median of {rounds}; the client is the bottleneck, so msg/CPU-s "
          f"is the figure\n")
    print("| server | msg/s | msg/CPU-s | min–max | RSS MiB | PSS MiB |")
    print("|---|---|---|---|---|---|")
    for n, (mps, mpc, rss, pss) in med.items():
        print(f"| {n} | {mps:.0f} | {mpc:.0f} | {spread(results[n], 1)} | {mib(rss)} | "
              f"{mib(pss)} |")
    ratios(med, what="msg/s; msg/CPU-s")
    failed_lines(failed)


# ---------------------------------------------------------------- upload

def upload_servers():
    return {
        "granc-wsgi": (WSGI["granc"], "upload_wsgi:app"),
        "granc-asgi": (ASGI["granc"], "upload_asgi:app"),
        "uwsgi": (uwsgi, "upload_wsgi:app"),
        "gunicorn-sync": (gunicorn("--timeout", "600"), "upload_wsgi:app"),
        "gunicorn-gthread": (gunicorn("-k", "gthread", "--threads", "4", "--timeout", "600"),
                             "upload_wsgi:app"),
        "waitress": (opts(waitress, "--max-request-body-size", str(1 << 40)), "upload_wsgi:app"),
        "uvicorn-httptools": (ASGI["uvicorn-httptools"], "upload_asgi:app"),
        "hypercorn": (hypercorn, "upload_asgi:app"),
        "daphne": (daphne, "upload_asgi:app"),
    }


def warm(path):
    """Read path through, untimed, so that the upload's client finds all of
    it in the page cache.  A sparse file costs little to read only once its
    pages are cached: otherwise the client's read() allocates and zeroes
    every page first (ext4_mpage_readpages -> memset), and on this VM memory
    not touched lately (page cache evicted after a minute idle by DAMON,
    freed pages handed back to the host) zeroes at ~400 MB/s.  Without this,
    the first server of the case (granc-wsgi) ran at 215-400 MiB/s, its
    worker waiting in poll() while curl spent 2+ s of system time in memset,
    and the servers after it at 1-2 GB/s (README, Uploads, 2026-12-07)."""
    buf = bytearray(MIB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def case_upload(name, a):
    size = a.upload_mib * MIB
    src = f"{TMP}-upload-{a.upload_mib}M"
    if not os.path.exists(src) or os.path.getsize(src) != size:
        with open(src, "wb") as f:                  # sparse: no disk, and cached
            f.truncate(size)                        # by warm() before each upload
    servers = pick(upload_servers(), a.servers)
    rounds = a.rounds or 1
    results, failed = {n: [] for n in servers}, {}
    for rnd in range(rounds):
        for n, spec in servers.items():
            if n in failed:
                continue
            try:
                srv = started(n, spec)
            except RuntimeError as e:
                failed[n] = f"did not start: {e}"
                continue
            try:
                warm(src)                           # also the 0.2 s for the server to settle
                time.sleep(0.2)
                pids = srv.pids()
                before = rss_kib(pids)
                peak = [before]
                done = threading.Event()

                def sample():
                    while not done.wait(0.1):
                        peak[0] = max(peak[0], rss_kib(srv.pids()))
                th = threading.Thread(target=sample, daemon=True)
                th.start()
                c0 = cpu_seconds(pids)
                k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                out = subprocess.run(
                    ["taskset", "-c", CLIENT_CPU, "curl", "-sS", "-H", "Expect:", "-T", src,
                     "--max-time", str(a.upload_timeout), "-o", "-",
                     "-w", "\n%{http_code} %{size_upload}", f"http://127.0.0.1:{srv.port}/"],
                    capture_output=True, text=True)
                secs = time.monotonic() - t0
                cpu = cpu_seconds(srv.pids()) - c0
                k1 = resource.getrusage(resource.RUSAGE_CHILDREN)     # curl's own
                ccpu = k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime
                done.set()
                th.join()
                peak[0] = max(peak[0], rss_kib(srv.pids()))
                lines = out.stdout.strip().splitlines()
                got = lines[0] if len(lines) > 1 else ""
                status = lines[-1].split()[0] if lines else "?"
                if status != "200" or got != str(size):
                    raise RuntimeError(f"status {status}, server read {got or '?'} bytes; "
                                       f"{out.stderr.strip()[:100]}")
                results[n].append((size / MIB / secs, cpu, ccpu, before, peak[0]))
                log(f"upload round {rnd + 1} {n}: {size / MIB / secs:.0f} MiB/s, "
                    f"curl CPU {ccpu:.2f} s, peak RSS {mib(peak[0])} MiB")
            except RuntimeError as e:
                failed[n] = str(e)
            finally:
                srv.stop()
    med = {n: [statistics.median(x[i] for x in r) for i in range(5)]
           for n, r in results.items() if r}
    print(f"\n### upload: {a.upload_mib} MiB streamed PUT\n\ncurl -T (Content-Length, no "
          f"Expect) of a file read through just before (page cache) on CPU {CLIENT_CPU}, one "
          f"upload at a time, 1 worker on CPU {SERVER_CPU}; "
          f"the app reads the body in chunks and discards it (apps/upload_*.py); RSS of the "
          f"server sampled every 0.1 s; median of {rounds}\n")
    print("| server | MiB/s | min–max | server CPU-s | curl CPU-s | RSS before MiB | "
          "peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for n, (mps, cpu, ccpu, before, peak) in med.items():
        print(f"| {n} | {mps:.0f} | {spread(results[n], 0)} | {cpu:.2f} | {ccpu:.2f} | "
              f"{mib(before)} | {mib(peak)} |")
    failed_lines(failed)


# ---------------------------------------------------------------- idle

def idle_servers():
    t = "600"
    return {
        "granc-wsgi": (opts(WSGI["granc"], "--http1-header-read-timeout", "60000"),
                       "hello_wsgi:app"),
        "granc-asgi": (opts(ASGI["granc"], "--http1-header-read-timeout", "60000"),
                       "idle_asgi:app"),
        "uvicorn-httptools": (opts(ASGI["uvicorn-httptools"], "--timeout-keep-alive", t),
                              "idle_asgi:app"),
        "hypercorn": (opts(hypercorn, "--keep-alive", t), "idle_asgi:app"),
        "daphne": (daphne, "idle_asgi:app"),
        "gunicorn-gthread": (gunicorn("-k", "gthread", "--threads", "4", "--keep-alive", t,
                                      "--worker-connections", "20000"), "hello_wsgi:app"),
        "waitress": (opts(waitress, "--connection-limit", "20000", "--asyncore-use-poll",
                          "--channel-timeout", t), "hello_wsgi:app"),
        "nginx": (nginx(), "hello"),
    }


IDLE_SKIP = {
    "gunicorn-sync": "the sync worker closes every connection after its response (no keep-alive)",
    "uwsgi": "--http11-socket serves one connection at a time per process, so idle "
             "keep-alive connections wait in the backlog",
}

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def response_done(buf):
    """None while incomplete, else True for a 200."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if m:
        if len(buf) - end - 4 < int(m.group(1)):
            return None
    elif b"chunked" in head and not buf.endswith(b"0\r\n\r\n"):
        return None
    return buf[9:12] == b"200"


def open_idle(port, n, batch=25, batch_timeout=10, budget=60, hello=REQ, done=response_done,
              last=b""):
    """Open n connections, one GET each, answered and kept open; returns
    (the sockets, failures, why it stopped early or "").  Batches stay
    under the smallest listen backlog (Twisted's 50, daphne): more SYNs
    than that wait a second for a retransmission.  hello is what a
    connection sends first, done(bytes read) says when it is open (None:
    not yet, True: held, False: refused), and last is sent once it is."""
    held, failed = [], 0
    sel = selectors.DefaultSelector()
    stop = time.monotonic() + budget
    for start in range(0, n, batch):
        if time.monotonic() > stop:
            return held, failed, f"stopped opening after {budget} s"
        bufs = {}
        for _ in range(min(batch, n - start)):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            bufs[s] = b""
        deadline = time.monotonic() + batch_timeout
        while bufs and time.monotonic() < deadline:
            for key, ev in sel.select(0.5):
                s = key.fileobj
                try:
                    if ev & selectors.EVENT_WRITE:
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            raise OSError("connect failed")
                        s.send(hello)
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    bufs[s] += data
                    ok = done(bufs[s])
                    if ok is None:
                        continue
                    if not ok:
                        raise OSError("not 200")
                    if last:
                        s.send(last)
                    sel.unregister(s)
                    del bufs[s]
                    held.append(s)
                except OSError:
                    sel.unregister(s)
                    del bufs[s]
                    s.close()
                    failed += 1
        for s in bufs:
            sel.unregister(s)
            s.close()
        failed += len(bufs)
        if bufs:
            return held, failed, f"{len(bufs)} of a batch of {batch} unanswered after " \
                                 f"{batch_timeout} s"
    return held, failed, ""


def still_open(socks):
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN | select.POLLRDHUP)
    return len(socks) - len(p.poll(0))


def hold_idle(label, srv_name, spec, n, notes, **kw):
    """A fresh server; n idle connections opened (open_idle's kw) and
    counted 1 s after the last: (held, seconds, RSS before, RSS held, PSS
    held) in KiB, or None when it did not start.  What went wrong goes to
    notes."""
    try:
        srv = started(srv_name, spec)
    except RuntimeError as e:
        notes.append(f"- {srv_name}: did not start: {e}")
        return None
    held = []
    try:
        time.sleep(0.5)
        before = rss_kib(srv.pids())
        t0 = time.monotonic()
        held, failed, why = open_idle(srv.port, n, **kw)
        secs = time.monotonic() - t0
        time.sleep(1)
        alive = still_open(held)
        pids = srv.pids()
        rss, pss = rss_kib(pids), pss_kib(pids)
        log(f"{label}: {alive} held, RSS {mib(before)} -> {mib(rss)} MiB")
        if alive < n:
            notes.append(f"- {label}: held {alive} of {n} ({failed} failed"
                         f"{'; ' + why if why else ''}; {len(held) - alive} closed by "
                         f"the server)")
        return alive, secs, before, rss, pss
    finally:
        for s in held:
            s.close()
        srv.stop()


def case_idle(name, a):
    n = a.idle or 10000
    servers = pick(idle_servers(), a.servers)
    print(f"\n### idle: {n} idle keep-alive connections\n\nEach connection sends one GET /, "
          f"reads the answer and stays open (keep-alive timeouts raised: granc's to its "
          f"maximum, 60 s, the others' to 600 s; the ASGI app awaits receive(), "
          f"apps/idle_asgi.py); RSS/PSS of the server, 1 worker on CPU {SERVER_CPU}, before "
          f"(after one request) and with all of them held\n")
    print("| server | held | open s | RSS before MiB | RSS held MiB | KiB/conn | "
          "PSS held MiB |")
    print("|---|---|---|---|---|---|---|")
    notes = [f"- {k}: skipped: {v}" for k, v in pick(IDLE_SKIP, a.servers).items()]
    for srv_name, spec in servers.items():
        m = hold_idle(f"idle {srv_name}", srv_name, spec, n, notes)
        if m:
            alive, secs, before, rss, pss = m
            per = (rss - before) / alive if alive else 0
            print(f"| {srv_name} | {alive} | {secs:.1f} | {mib(before)} | {mib(rss)} | "
                  f"{per:.1f} | {mib(pss)} |")
    if notes:
        print()
        print("\n".join(notes))


# ---------------------------------------------------------------- h2, h2-idle, h2-tls
#
# h2load (nghttp2-client) is the client: HTTP/1.1 keep-alive with --h1,
# else HTTP/2 (h2c with prior knowledge over http://, ALPN h2 over https://).

H2_CLIENTS = {
    "h1 -c64 -m1": ["--h1", "-c", "64", "-m", "1"],
    "h2 -c64 -m1": ["-c", "64", "-m", "1"],
    "h2 -c16 -m10": ["-c", "16", "-m", "10"],
}

H2_PEER_NOTE = ("hypercorn: HTTP/2 rows only (its HTTP/1.1 row is in the asgi case: it closes "
                "a keep-alive connection whose request the app did not receive())")


def h2_servers():
    return {
        "granc-asgi": (ASGI["granc"], "hello_asgi:app"),
        "granc-wsgi-pool": (WSGI["granc-pool"], "hello_wsgi:app"),
        "granc-wsgi": (WSGI["granc"], "hello_wsgi:app"),
        "hypercorn": (hypercorn, "hello_asgi:app"),
    }


def h2_tls_servers():
    s = https_servers()
    return {"granc-asgi": s["granc"], "hypercorn": s["hypercorn"]}


H2 = {
    "h2": dict(title="hello world (13 B) over HTTP/1.1 and HTTP/2 cleartext (h2c, prior "
                     "knowledge)", servers=h2_servers),
    "h2-tls": dict(title="ASGI hello world over TLS: HTTP/1.1 and HTTP/2 by ALPN (EC P-256)",
                   servers=h2_tls_servers, scheme="https"),
}


def h2load(port, seconds, args, scheme="http"):
    """One h2load run of `seconds` (duration mode, -D): (requests
    succeeded, req/s, mean and max ms per request, failed + errored +
    timed out + non-2xx)."""
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, "h2load", *args, "-D", str(seconds),
                          f"{scheme}://127.0.0.1:{port}/"], capture_output=True, text=True)
    text = out.stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    f = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if not m or not f:
        raise RuntimeError("h2load: " + ((text + out.stderr).strip().splitlines()
                                         or ["no output"])[-1])
    if "--h1" not in args and "Application protocol: h2" not in text:
        raise RuntimeError("h2load did not negotiate h2: "
                           + (re.findall(r"Application protocol: \S+", text) or ["none"])[0])
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    non2xx = sum(int(x) for x in codes.groups()[1:]) if codes else 0

    def ms(v):
        n, u = re.match(r"([\d.]+)(\w+)", v).groups()
        return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    mean, top = (ms(lat.group(3)), ms(lat.group(2))) if lat else (0, 0)
    reqs = int(m.group(1))
    bad = int(m.group(2)) + int(m.group(3)) + int(m.group(4)) + non2xx
    return reqs, float(f.group(3)), mean, top, bad


def measure_h2(srv, seconds, args):
    """A 1 s warm-up run, then the measured one: req/s, req/CPU-s, mean
    ms, max ms, failures, the worker's RSS KiB."""
    h2load(srv.port, 1, args, srv.scheme)
    pids = srv.pids()
    c0 = cpu_seconds(pids)
    reqs, rps, mean, top, bad = h2load(srv.port, seconds, args, srv.scheme)
    cpu = cpu_seconds(pids) - c0
    return [rps, reqs / cpu if cpu else 0, mean, top, bad, top_rss_kib(srv.pids())]


def case_h2(name, a):
    c = H2[name]
    servers = pick(c["servers"](), a.servers)
    scheme = c.get("scheme", "http")
    rounds = a.rounds or 3
    rows = [(n, k) for n in servers for k in H2_CLIENTS
            if not (n == "hypercorn" and k.startswith("h1"))]
    results, failed = {r: [] for r in rows}, {}
    for rnd in range(rounds):
        for n, spec in servers.items():
            try:
                srv = started(n, spec, scheme=scheme)
            except RuntimeError as e:
                failed[n] = f"did not start: {e}"
                continue
            try:
                for k in H2_CLIENTS:
                    if (n, k) not in results or (n, k) in failed:
                        continue
                    try:
                        r = measure_h2(srv, a.seconds, H2_CLIENTS[k])
                    except RuntimeError as e:
                        failed[(n, k)] = str(e)
                        continue
                    results[(n, k)].append(r)
                    log(f"{name} round {rnd + 1} {n} {k}: {r[0]:.0f} req/s, "
                        f"{r[1]:.0f} req/CPU-s, {r[4]} failed")
            finally:
                srv.stop()
    med = {r: [statistics.median(x[i] for x in v) for i in range(6)]
           for r, v in results.items() if v}
    print(f"\n### {name}: {c['title']}\n\nh2load -D {a.seconds} (after a 1 s warm-up run) on "
          f"CPU {CLIENT_CPU}, 1 worker on CPU {SERVER_CPU}, median of {rounds} interleaved "
          f"rounds, min–max beside; `h1`: `h2load --h1` (HTTP/1.1 keep-alive), `h2`: HTTP/2; "
          f"-c connections, -m requests in flight per connection\n")
    print("| server | client | req/s | min–max | req/CPU-s | min–max | mean ms | max ms | "
          "failed | worker RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (n, k), (rps, rpc, mean, top, bad, rss) in med.items():
        print(f"| {n} | {k} | {rps:.0f} | {spread(results[(n, k)], 0)} | {rpc:.0f} | "
              f"{spread(results[(n, k)], 1)} | {mean:.2f} | {top:.2f} | "
              f"{sum(x[4] for x in results[(n, k)])} | {mib(rss)} |")
    print("\nfailed: failed + errored + timed out + non-2xx, summed over the rounds")
    lines = []

    def ratio(label, num, den, target, ok):
        if num in med and den in med and med[den][0] and med[den][1]:
            q = [med[num][i] / med[den][i] for i in (0, 1)]
            lines.append(f"| {label} | {q[0]:.2f} | {q[1]:.2f} | {target} | "
                         f"{'yes' if ok(q[1]) else 'no'} |")
    for n in servers:
        if n.startswith("granc"):
            ratio(f"{n}: h2 -m1 / h1", (n, "h2 -c64 -m1"), (n, "h1 -c64 -m1"), "≥ 0.8",
                  lambda q: q >= 0.8)
            ratio(f"{n}: h2 -m10 / h1", (n, "h2 -c16 -m10"), (n, "h1 -c64 -m1"), "> 1",
                  lambda q: q > 1)
    for n in servers:
        if n.startswith("granc-asgi") or (n.startswith("granc") and name == "h2"):
            for k in ("h2 -c64 -m1", "h2 -c16 -m10"):
                ratio(f"{n} / hypercorn, {k}", (n, k), ("hypercorn", k), "≥ 3",
                      lambda q: q >= 3)
    if lines:
        print("\n| ratio | req/s | req/CPU-s | target | met (req/CPU-s)? |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))
    if "hypercorn" in servers:
        print(f"\n{H2_PEER_NOTE}")
    stalls({f"{n} {k}": v for (n, k), v in results.items()})
    failed_lines({(f"{x[0]} {x[1]}" if isinstance(x, tuple) else x): v
                  for x, v in failed.items()})


# HTTP/2 connection preface, an empty SETTINGS frame, and a SETTINGS ACK
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def h2_settled(buf):
    """None until the server sent its SETTINGS and acknowledged ours; False
    on a GOAWAY or what is not HTTP/2."""
    settings = ack = False
    i = 0
    while len(buf) - i >= 9:
        length = int.from_bytes(buf[i:i + 3], "big")
        ftype, flags = buf[i + 3], buf[i + 4]
        if i == 0 and ftype != 4:
            return False
        if ftype == 7:
            return False
        if ftype == 4:
            if flags & 1:
                ack = True
            else:
                settings = True
        i += 9 + length
    return True if settings and ack else None


def h2_idle_servers():
    t = "600"
    return {
        "granc-asgi": (opts(ASGI["granc"], "--http1-header-read-timeout", "60000"),
                       "idle_asgi:app"),
        "granc-wsgi": (opts(WSGI["granc"], "--http1-header-read-timeout", "60000"),
                       "hello_wsgi:app"),
        "hypercorn": (opts(hypercorn, "--keep-alive", t), "idle_asgi:app"),
    }


def case_h2_idle(name, a):
    n = a.idle or 2000
    servers = pick(h2_idle_servers(), a.servers)
    print(f"\n### h2-idle: {n} idle HTTP/2 connections beside {n} idle HTTP/1.1 keep-alive "
          f"ones\n\nHTTP/2 (h2c, prior knowledge): each connection sends the preface and an "
          f"empty SETTINGS, reads the server's SETTINGS and its ACK, acknowledges the "
          f"server's SETTINGS and stays open, no request. HTTP/1.1: one GET / answered, then "
          f"open (as the idle case). A fresh server for each, 1 worker on CPU {SERVER_CPU}; "
          f"RSS of the server before and with all of them held, 1 s after the last\n")
    print("| server | protocol | held | open s | RSS before MiB | RSS held MiB | KiB/conn |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    for srv_name, spec in servers.items():
        for proto, kw in (("HTTP/1.1", {}),
                          ("HTTP/2", dict(hello=H2_PREFACE, done=h2_settled,
                                          last=H2_SETTINGS_ACK))):
            m = hold_idle(f"h2-idle {srv_name} {proto}", srv_name, spec, n, notes, **kw)
            if not m:
                break
            alive, secs, before, rss, _ = m
            per = (rss - before) / alive if alive else 0
            print(f"| {srv_name} | {proto} | {alive} | {secs:.1f} | {mib(before)} | "
                  f"{mib(rss)} | {per:.1f} |")
    if notes:
        print()
        print("\n".join(notes))


# ---------------------------------------------------------------- startup, footprint

def startup_servers():
    return {
        "granc-wsgi": (WSGI["granc"], "hello_wsgi:app"),
        "granc-asgi": (ASGI["granc"], "hello_asgi:app"),
        "uwsgi": (uwsgi, "hello_wsgi:app"),
        "gunicorn-sync": (WSGI["gunicorn-sync"], "hello_wsgi:app"),
        "gunicorn-gthread": (WSGI["gunicorn-gthread"], "hello_wsgi:app"),
        "waitress": (waitress, "hello_wsgi:app"),
        "uvicorn-httptools": (ASGI["uvicorn-httptools"], "hello_asgi:app"),
        "hypercorn": (hypercorn, "hello_asgi:app"),
        "daphne": (daphne, "hello_asgi:app"),
        "nginx": (nginx(), "hello"),
    }


def startup_once(n, spec):
    srv = Server(n, spec)
    try:
        t = srv.ready(interval=0.002)
        pids = srv.pids()
        return t, rss_kib(pids), pss_kib(pids)
    finally:
        srv.stop()


def case_startup(name, a):
    servers = pick(startup_servers(), a.servers)
    rounds = a.rounds or 5
    results, failed = {n: [] for n in servers}, {}
    for rnd in range(rounds):
        for n, spec in servers.items():
            if n in failed:
                continue
            try:
                results[n].append(startup_once(n, spec))
            except RuntimeError as e:
                failed[n] = str(e)
    print(f"\n### startup: exec to the first 200 (hello world)\n\nThe server is exec'd on CPU "
          f"{SERVER_CPU} and probed with GET / every 2 ms from CPU {CLIENT_CPU}; median of "
          f"{rounds}, interleaved; memory at the first response\n")
    print("| server | start-up ms | min ms | max ms | RSS MiB | PSS MiB |")
    print("|---|---|---|---|---|---|")
    for n, r in results.items():
        if r:
            ts = [x[0] * 1000 for x in r]
            print(f"| {n} | {statistics.median(ts):.0f} | {min(ts):.0f} | {max(ts):.0f} | "
                  f"{mib(statistics.median(x[1] for x in r))} | "
                  f"{mib(statistics.median(x[2] for x in r))} |")
    failed_lines(failed)


BASE_LIBS = ("linux-vdso", "libc.so", "libm.so", "libdl.so", "libpthread.so", "ld-linux")


def link_size(path):
    """(stripped size, size as built, direct libraries, bytes of the
    libraries it loads beyond libc) of a granc binary."""
    out = f"{TMP}-granc-stripped"
    subprocess.run(["strip", "-o", out, path], check=True)
    stripped, full = os.path.getsize(out), os.path.getsize(path)
    os.unlink(out)
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                        subprocess.run(["readelf", "-d", path], capture_output=True,
                                       text=True).stdout)
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = sorted({os.path.realpath(m) for m in re.findall(r"=> (/\S+)", ldd)
                   if not any(b in m for b in BASE_LIBS)})
    return stripped, full, needed, sum(os.path.getsize(x) for x in libs)


def footprint():
    """granc's own code (the shared build, stripped), what the binary run
    here and its libraries beyond libc come to, and its start-up time."""
    kib = lambda n: f"{n / 1024:.0f} KiB"
    own = ""
    if os.path.exists(GRANC_SHARED):
        stripped, _, _, libs = link_size(GRANC_SHARED)
        own = (f"granc's own code {kib(stripped)} stripped (tests/granc-shared; "
               f"{kib(stripped + libs)} with its libraries beyond libc); ")
    stripped, full, needed, libs = link_size(GRANC)
    try:
        ts = sorted(startup_once("granc", (WSGI["granc"], "hello_wsgi:app"))[0]
                    for _ in range(3))
        start = f"{ts[1] * 1000:.0f} ms"
    except RuntimeError as e:
        start = f"failed ({e})"
    shown = os.path.relpath(GRANC, ROOT) if GRANC.startswith(ROOT + "/") else GRANC
    print(f"footprint: {own}granc ({shown}) {kib(stripped)} stripped ({kib(full)} as built), "
          f"{kib(stripped + libs)} with its libraries beyond libc (the Python stdlib aside); "
          f"needs {', '.join(needed)}; start-up to first response "
          f"(WSGI hello, median of 3): {start}")


# ---------------------------------------------------------------- main

def log(msg):
    print(msg, file=sys.stderr, flush=True)


RUN = {**{n: case_http for n in HTTP}, "summary": case_summary, "ws": case_ws, "upload": case_upload,
       "idle": case_idle, "startup": case_startup, "conns": case_conns,
       "spread": case_spread, "h2": case_h2, "h2-tls": case_h2, "h2-idle": case_h2_idle}


def raise_nofile(want=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv=None):
    global GRANC
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", default=[],
                    help="case(s) to run, comma-separated or repeated (default: "
                         + ",".join(MAIN) + ")")
    ap.add_argument("--all", action="store_true", help="every case, one after another")
    ap.add_argument("--seconds", type=int,
                    help="seconds per measured run (default 5; 3 with --all)")
    ap.add_argument("--rounds", type=int,
                    help="rounds (default 3; upload 1, startup 5, spread 1)")
    ap.add_argument("--conns", type=int,
                    help="connections (default 64; ws 16; conns 64,256,1024; spread 64,1024)")
    ap.add_argument("--upload-mib", type=int, default=1024, help="upload size (MiB)")
    ap.add_argument("--upload-timeout", type=int, default=300, help="seconds per upload")
    ap.add_argument("--idle", type=int, help="idle connections (default 10000; h2-idle 2000)")
    ap.add_argument("--granc", help="granc binary (default $GRANC_BIN, else tests/granc-test)")
    ap.add_argument("--list", action="store_true", help="list the cases and their servers")
    ap.add_argument("servers", nargs="*", help="only these servers (names as in the tables; "
                                               "a prefix before '-' picks the variants)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # atexit stops the servers
    if a.granc:
        GRANC = os.path.abspath(a.granc)
    if a.list:
        others = {"summary": sorted({n for g in summary_groups() for n in g[3]}),
                  "ws": family(WS, ""), "upload": upload_servers(), "idle": idle_servers(),
                  "startup": startup_servers(), "conns": ["granc-wsgi", "granc-asgi",
                                                          "(uvicorn-httptools)"],
                  "spread": ["granc-asgi", "granc-wsgi"], "h2": h2_servers(),
                  "h2-tls": h2_tls_servers(), "h2-idle": h2_idle_servers()}
        for c in CASES:
            names = HTTP[c]["servers"]() if c in HTTP else others[c]
            print(f"{c}{' (main)' if c in MAIN else ''}: {' '.join(names)}")
        return
    cases = CASES if a.all else [c for x in a.case for c in x.split(",") if c] or MAIN
    bad = [c for c in cases if c not in RUN]
    if bad:
        ap.error(f"unknown case(s) {', '.join(bad)}; cases: {', '.join(CASES)}")
    if a.seconds is None:
        a.seconds = 3 if a.all else 5
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    nofile = raise_nofile()
    if nofile < (a.idle or 10000) + 1000 and "idle" in cases:
        log(f"RLIMIT_NOFILE is {nofile}: fewer idle connections than asked")
    print(f"granc bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, cases: {', '.join(cases)}")
    footprint()
    t0 = time.monotonic()
    for c in cases:
        t = time.monotonic()
        try:
            RUN[c](c, a)
        except Exception as e:                  # one broken case must not stop --all
            print(f"\n### {c}: failed: {type(e).__name__}: {e}")
        sys.stdout.flush()
        log(f"case {c}: {time.monotonic() - t:.0f} s")
    log(f"all cases: {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
