"""Black-box test harness: every test talks to the real granc binary.

`Server` starts granc on an ephemeral port (--port 0), reads the port it
logged, and waits until every worker has logged "Started worker-N" -- never
a fixed sleep.  GRANC_BIN names the binary (the Makefile sets it); without
it, the suite runs tests/granc-test, which it first brings up to date with
`make tests/granc-test`, so that a plain `pytest` never tests a stale build.
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
BIN = os.environ.get("GRANC_BIN")
if not BIN:
    BIN = os.path.join(ROOT, "tests", "granc-test")
    subprocess.run(["make", "-s", "-C", ROOT, "tests/granc-test"], check=True, timeout=600)
ASAN = bool(os.environ.get("GRANC_ASAN"))
START_TIMEOUT = 60 if ASAN else 20


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests skipped under ASan")


class Server:
    def __init__(self, target, *args, interface="wsgi", env=None, cwd=APPS,
                 uds=None, workers=1, log_path=None):
        self.target, self.args, self.uds = target, list(args), uds
        self.interface, self.cwd, self.workers = interface, cwd, workers
        self.env = dict(os.environ)
        self.env.pop("VIRTUAL_ENV", None)
        for k in list(self.env):
            if k.startswith("GRANIAN_"):
                del self.env[k]
        self.env.update(env or {})
        self.log_path = log_path or f"/tmp/granc-test-{os.getpid()}-{id(self)}.log"
        self.proc = None
        self.port = None

    def cmd(self):
        c = [BIN, "--interface", self.interface]
        c += ["--uds", self.uds] if self.uds else ["--port", "0"]
        if self.workers != 1:
            c += ["--workers", str(self.workers)]
        return c + self.args + [self.target]

    def start(self, wait=True):
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            out = self.log()
            m = re.search(r"Listening at: https?://[^ ]*:(\d+)", out)
            if m:
                self.port = int(m.group(1))
            started = len(re.findall(r"Started worker-\d+", out))
            if (self.port or self.uds) and started >= self.workers:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"granc exited {self.proc.returncode}:\n{out}")
            time.sleep(0.02)
        raise RuntimeError(f"granc did not start:\n{self.log()}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout=10):
        if self.uds:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.uds)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        if getattr(self, "logf", None):
            self.logf.close()
        out = self.log()
        if ASAN:
            assert "AddressSanitizer" not in out and "runtime error:" not in out, out
        return self.proc.returncode

    def worker_pids(self):
        return [int(p) for p in re.findall(r"Spawning worker-\d+ with PID: (\d+)", self.log())]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def free_port():
    """A port free on 127.0.0.1 now, for servers (proxies, an instance that
    restarts) that must be told their port in advance."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, out):
    """Terminate a helper process (a proxy in front of granc), kill it if
    it lingers, and close its output file."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out.close()


def raw(server, data, timeout=10, read_all=True):
    """Send bytes, return everything the server sends until it closes."""
    s = server.connect(timeout)
    s.sendall(data)
    chunks = []
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
            if not read_all:
                break
    finally:
        s.close()
    return b"".join(chunks)


def read_response(sock, buf=b"", head_req=False):
    """Read one response (Content-Length or chunked) from sock; return
    (status, headers dict, body, leftover bytes).  head_req: it answers HEAD."""
    def more():
        b = sock.recv(65536)
        if not b:
            raise EOFError("connection closed")
        return b
    while b"\r\n\r\n" not in buf:
        buf += more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if head_req or status < 200 or status in (204, 304):
        return status, headers, b"", buf
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            buf += more()
        return status, headers, buf[:n], buf[n:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += more()
            line, buf = buf.split(b"\r\n", 1)
            size = int(line, 16)
            while len(buf) < size + 2:
                buf += more()
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return status, headers, body, buf
    body = buf
    try:
        while True:
            body += more()
    except EOFError:
        pass
    return status, headers, body, b""


@pytest.fixture
def wsgi_server():
    """Factory: wsgi_server('app:app', *args) -> a started Server."""
    servers = []

    def make(target="wsgi_app:app", *args, **kw):
        s = Server(target, *args, **kw)
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
