"""HTTP/2 (h2c prior knowledge, h2 over TLS with ALPN), black-box.

Two clients: python3-h2's H2Connection (`H2C` below: a correct client
with HPACK Huffman coding and the dynamic table, flow control) for the
ordinary tests, and a raw frame writer/reader (`Raw`: literal HPACK, frames
built by hand) for the protocol details, malformed input and floods.
curl, nghttp and h2load (Debian nghttp2-client) are the real clients.

All routes are tests/apps/h2_app.py's, which has the same routes for WSGI,
ASGI and RSGI.  H2TEST_HYPERCORN=1 runs the ASGI tests that need no granc
option against Hypercorn instead (the check of the clients in this file
against a known-good HTTP/2 server); everything else is skipped then.
"""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from conftest import APPS, ASAN, Server, free_port, read_response

import sys
sys.path.insert(0, APPS)
from h2_app import pattern  # noqa: E402

HYPERCORN = bool(os.environ.get("H2TEST_HYPERCORN"))
SLOW = 3 if ASAN else 1
MEM = 4 if ASAN else 1
MiB = 1 << 20
KiB = 1 << 10
IFACES = ["wsgi", "asgi", "rsgi"]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types, flags, settings, error codes (RFC 9113)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)
NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0, 1, 8, 7, 0xB


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

class Hypercorn(Server):
    """Hypercorn serving h2_app:asgi, with the Server interface."""

    def __init__(self, cert=None):
        super().__init__("h2_app:asgi", interface="asgi")
        self.cert = cert

    def cmd(self):
        self.port = free_port()
        c = ["/usr/bin/python3", "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "20"]
        if self.cert:
            c += ["--certfile", self.cert[0], "--keyfile", self.cert[1]]
        return c + ["h2_app:asgi"]

    def wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log()
                time.sleep(0.05)
        raise RuntimeError(self.log())

    def worker_pids(self):
        return []

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2pki"))
    with open(os.path.join(d, "req.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name=dn\n[dn]\n")
    subprocess.run(["openssl", "req", "-config", "req.cnf", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


@pytest.fixture
def serve(request):
    """serve(iface, *granc args, tls=False, rss=False) -> a started server;
    s.tls says whether it speaks TLS; rss: its RSS is measured.  Under H2TEST_HYPERCORN, Hypercorn (ASGI, no
    options) or a skip."""
    servers = []

    def make(iface="asgi", *args, tls=False, rss=False, **kw):
        c = request.getfixturevalue("cert") if tls else None
        if rss and ASAN and not HYPERCORN:
            # ASan's quarantine (256 MiB) holds freed memory: RSS would
            # measure it rather than the server
            kw["env"] = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                         ":quarantine_size_mb=16:thread_local_quarantine_size_kb=256"}
        if HYPERCORN:
            if iface != "asgi" or [a for a in args if a not in ("--http", "auto")] or kw:
                pytest.skip("granc only")
            s = Hypercorn(c)
        else:
            if tls:
                args = ("--ssl-certificate", c[0], "--ssl-keyfile", c[1]) + args
            s = Server(f"h2_app:{iface}", *args, interface=iface, **kw)
        s.tls = tls
        servers.append(s)
        return s.start()
    yield make
    for s in servers:
        try:
            s.stop()
        except subprocess.TimeoutExpired:
            print(f"--- {s.cmd()} did not stop in 30 s after SIGTERM; its log:\n{s.log()[-4000:]}")
            raise
        finally:
            try:
                os.unlink(s.log_path)
            except OSError:
                pass


def granc_only():
    if HYPERCORN:
        pytest.skip("granc only")


def worker_pid(s):
    pids = s.worker_pids()
    if pids:
        return pids[-1]
    try:
        with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
        if kids:
            return kids[-1]
    except OSError:
        pass
    return s.proc.pid


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


class RssWatch:
    """Samples a process's RSS every 50 ms in a thread; .peak, .growth."""

    def __init__(self, pid):
        self.pid, self.base = pid, rss_mib(pid)
        self.peak, self.stop_ev = self.base, threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.05):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, KeyError):
                return

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        try:
            self.peak = max(self.peak, rss_mib(self.pid))
        except (OSError, KeyError):
            pass
        return self.peak - self.base


def tls_sock(port, alpn=("h2",), timeout=10):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def connect(s, timeout=10, alpn=("h2",)):
    if getattr(s, "tls", False):
        sock = tls_sock(s.port, alpn, timeout)
        if alpn == ("h2",):
            assert sock.selected_alpn_protocol() == "h2"
        return sock
    return s.connect(timeout)


def recv_all(sock, timeout=10):
    """Everything the peer sends until it closes (or resets, or timeout)."""
    sock.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            b = sock.recv(65536)
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            break
        if not b:
            break
        out += b
    return out


def parse_frames(data):
    """bytes -> [(type, flags, sid, payload)], the complete frames only."""
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        if i + 9 + n > len(data):
            break
        t, fl, sid = data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        out.append((t, fl, sid, data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def goaway_of(frames):
    """(last stream id, error code) of the last GOAWAY among frames, or None."""
    g = [f for f in frames if f[0] == GOAWAY]
    if not g:
        return None
    p = g[-1][3]
    return int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big")


# ---------------------------------------------------------------------------
# the raw client
# ---------------------------------------------------------------------------

def frame(ftype, flags=0, sid=0, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        (sid & 0x7FFFFFFF).to_bytes(4, "big") + payload


def settings_frame(settings=None, ack=False):
    p = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, p)


def hp_int(v, bits, first=0):
    """An HPACK integer with a `bits`-bit prefix (RFC 7541 5.1)."""
    mx = (1 << bits) - 1
    if v < mx:
        return bytes([first | v])
    out = [first | mx]
    v -= mx
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hp_lit(name, value, index=False):
    """A literal header field, new name, no Huffman: without indexing, or
    with incremental indexing (it then enters the dynamic table)."""
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    return (b"\x40" if index else b"\x00") + hp_int(len(n), 7) + n + hp_int(len(v), 7) + v


def req_block(method="GET", path="/info", authority="localhost", scheme="http", extra=()):
    """A stateless header block (literals only): any number can be sent on
    one connection without keeping an encoder in step."""
    hs = [(":method", method), (":scheme", scheme), (":authority", authority),
          (":path", path)] + list(extra)
    return b"".join(hp_lit(k, v) for k, v in hs)


def wu_frame(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst_frame(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


class RawResp:
    def __init__(self):
        self.headers, self.data, self.trailers = None, b"", None
        self.rst, self.ended = None, False

    @property
    def status(self):
        return int(dict(self.headers)[":status"]) if self.headers else None


class Raw:
    """A hand-driven HTTP/2 client connection: frames in and out, HPACK
    decoding of what comes back.  It acknowledges the server's SETTINGS
    itself; everything else is the test's."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 30
        self.lock = threading.Lock()
        self.block, self.block_sid, self.block_flags = b"", None, 0
        self.frames = []           # every frame read, in order
        self.resp = {}             # sid -> RawResp
        self.goaway = None         # (last sid, code)
        self.eof = False
        self.server_settings = None

    def send(self, *data):
        with self.lock:
            self.sock.sendall(b"".join(data))

    def hello(self, settings=None, window=1 << 30, preface=PREFACE):
        """Preface and SETTINGS; by default huge windows, so that the
        server is never flow-controlled by this client."""
        st = {S_INITIAL_WINDOW_SIZE: window} if window else {}
        st.update(settings or {})
        out = [preface, settings_frame(st)]
        if window:
            out.append(wu_frame(0, window))
        self.send(*out)
        return self

    def headers(self, sid, block, end_stream=True, padding=None, max_frame=16384):
        """HEADERS (+ CONTINUATION when the block is bigger than a frame)."""
        first, rest = block[:max_frame], block[max_frame:]
        flags = END_STREAM if end_stream else 0
        if padding is not None:
            flags |= PADDED
            first = bytes([padding]) + first + b"\0" * padding
        out = [frame(HEADERS, flags | (0 if rest else END_HEADERS), sid, first)]
        while rest:
            part, rest = rest[:max_frame], rest[max_frame:]
            out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, sid, part))
        self.send(*out)

    def request(self, sid, method="GET", path="/info", body=None, extra=(), **kw):
        self.headers(sid, req_block(method, path, extra=extra, **kw), end_stream=body is None)
        if body is not None:
            for i in range(0, len(body), 16384):
                self.send(frame(DATA, 0, sid, body[i:i + 16384]))
            self.send(frame(DATA, END_STREAM, sid))

    def _recv(self):
        try:
            b = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            b = b""
        if not b:
            self.eof = True
        self.buf += b
        return bool(b)

    def frame(self):
        """The next frame (type, flags, sid, payload), or None at EOF.
        socket.timeout propagates."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            if self.eof or not self._recv():
                return None
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
             self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        self._note(f)
        return f

    def _note(self, f):
        t, fl, sid, p = f
        self.frames.append((t, fl, sid, p if t != DATA else len(p)))
        if t == SETTINGS and not fl & ACK:
            if self.server_settings is None:
                self.server_settings = dict(struct.unpack(">HI", p[i:i + 6])
                                            for i in range(0, len(p), 6))
            try:
                self.send(settings_frame(ack=True))
            except OSError:
                pass
        elif t == GOAWAY:
            self.goaway = (int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big"))
        elif t == RST_STREAM:
            r = self.resp.setdefault(sid, RawResp())
            r.rst = int.from_bytes(p[:4], "big")
        elif t == DATA:
            if fl & PADDED:
                p = p[1:len(p) - p[0]]
            r = self.resp.setdefault(sid, RawResp())
            r.data += p
            if fl & END_STREAM:
                r.ended = True
        elif t in (HEADERS, CONTINUATION):
            if t == HEADERS:
                if fl & PADDED:
                    p = p[1:len(p) - p[0]]
                if fl & PRIO:
                    p = p[5:]
                self.block, self.block_sid, self.block_flags = b"", sid, fl
            self.block += p
            if fl & END_HEADERS:
                hs = [(k.decode(), v.decode()) for k, v in self.dec.decode(self.block, raw=True)]
                r = self.resp.setdefault(self.block_sid, RawResp())
                if r.headers is None or hs and hs[0][0] == ":status" and int(hs[0][1]) < 200:
                    r.headers = hs
                else:
                    r.trailers = hs
                if self.block_flags & END_STREAM:
                    r.ended = True

    def until(self, pred, timeout=10):
        """Read frames until pred(frame) is true: that frame, or None at EOF.
        Fails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; frames so far: {summary(self.frames)}"
            self.sock.settimeout(left)
            try:
                f = self.frame()
            except socket.timeout:
                raise AssertionError(f"timed out; frames so far: {summary(self.frames)}")
            if f is None or pred(f):
                return f

    def response(self, sid, timeout=10):
        """Read until stream sid ended or was reset (or EOF): its RawResp."""
        def done(_):
            r = self.resp.get(sid)
            return r is not None and (r.ended or r.rst is not None)
        if not done(None):
            self.until(done, timeout)
        return self.resp.setdefault(sid, RawResp())

    def read_to_eof(self, timeout=10):
        """Read until the server closes; fails if it does not in time."""
        self.until(lambda f: False, timeout)


def summary(frames, n=12):
    names = "DATA HEADERS PRIORITY RST SETTINGS PUSH PING GOAWAY WU CONT".split()
    out = []
    for t, fl, sid, p in frames[-n:]:
        name = names[t] if t < len(names) else str(t)
        extra = ""
        if t in (GOAWAY,):
            extra = f" code={int.from_bytes(p[4:8], 'big')} last={int.from_bytes(p[:4], 'big')}"
        elif t == RST_STREAM:
            extra = f" code={int.from_bytes(p[:4], 'big')}"
        out.append(f"{name}(sid={sid},fl={fl:#x}{extra})")
    return f"{len(frames)} frames, last: " + " ".join(out)


def raw_conn(s, timeout=10, **hello):
    return Raw(connect(s, timeout)).hello(**hello)


# ---------------------------------------------------------------------------
# the h2 (python3-h2) client
# ---------------------------------------------------------------------------

class Stream:
    def __init__(self):
        self.status, self.headers, self.data = None, None, bytearray()
        self.trailers, self.ended, self.reset, self.headers_end = None, False, None, False
        self.data_frames = 0

    def header(self, name):
        vals = [v for k, v in self.headers if k == name]
        return vals[0] if vals else None

    def json(self):
        return json.loads(bytes(self.data))


class H2C:
    """python3-h2 as a blocking client over one socket."""

    def __init__(self, sock, settings=None, auto_ack=True, conn_window=16 * MiB,
                 stream_window=1 * MiB):
        self.sock, self.auto_ack = sock, auto_ack
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        st = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
              h2.settings.SettingCodes.ENABLE_PUSH: 0}
        st.update(settings or {})
        self.conn.update_settings(st)
        if conn_window and conn_window > 65535:
            self.conn.increment_flow_control_window(conn_window - 65535)
        self.streams, self.goaway, self.closed = {}, None, False
        self.remote_settings, self.ping_acks, self.events = {}, [], []
        self.flush()

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.sock.sendall(d)

    def pump(self):
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self.events.append(type(ev).__name__)
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                st.headers = list(ev.headers)
                st.status = int(st.header(":status"))
                st.headers_end = ev.stream_ended is not None
            elif isinstance(ev, h2.events.DataReceived):
                st.data += ev.data
                st.data_frames += 1
                if self.auto_ack:
                    try:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass
            elif isinstance(ev, h2.events.TrailersReceived):
                st.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
            elif isinstance(ev, h2.events.PingAckReceived):
                self.ping_acks.append(ev.ping_data)
        self.flush()
        return True

    def request(self, method="GET", path="/info", headers=(), body=None, authority="localhost",
                scheme=None, end=True):
        if scheme is None:
            scheme = "https" if isinstance(self.sock, ssl.SSLSocket) else "http"
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", scheme)]
        if authority is not None:
            hs.append((":authority", authority))
        hs += [(":path", path)] + list(headers)
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, hs, end_stream=body is None and end)
        self.flush()
        if body is not None:
            self.send(sid, body, end)
        return sid

    def send(self, sid, data, end=True):
        off, st = 0, self.streams[sid]
        while off < len(data):
            n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                    len(data) - off)
            if n <= 0:
                assert self.pump(), "connection closed while sending"
                assert st.reset is None, f"stream reset ({st.reset}) while sending"
                continue
            self.conn.send_data(sid, data[off:off + n])
            off += n
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def wait(self, sid, timeout=30):
        st = self.streams[sid]
        deadline = time.monotonic() + timeout
        while not (st.ended or st.reset is not None):
            left = deadline - time.monotonic()
            assert left > 0, f"stream {sid} timed out ({self.events[-10:]})"
            self.sock.settimeout(left)
            assert self.pump(), f"connection closed before stream {sid} ended (goaway {self.goaway})"
        return st

    def get(self, path="/info", timeout=30, **kw):
        return self.wait(self.request("GET", path, **kw), timeout)

    def post(self, path, body, timeout=60, **kw):
        return self.wait(self.request("POST", path, body=body, **kw), timeout)


def h2c(s, timeout=30, **kw):
    return H2C(connect(s, timeout), **kw)


def http1(s, req=b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    sock = connect(s, alpn=("http/1.1",)) if getattr(s, "tls", False) else s.connect()
    sock.sendall(req)
    return recv_all(sock)


# ===========================================================================
# version selection
# ===========================================================================

def test_auto_cleartext_speaks_both(serve):
    s = serve("asgi")
    c = h2c(s)
    st = c.get("/info")
    assert st.status == 200 and st.json()["version"] == "2"
    out = http1(s)
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["version"] == "1.1"
    assert c.get("/info").status == 200            # the h2 connection still works


def test_http2_only_prior_knowledge(serve):
    s = serve("wsgi", "--http", "2")
    st = h2c(s).get("/info")
    assert st.status == 200 and st.json()["version"] == "HTTP/2"


def test_http2_only_refuses_http1(serve):
    s = serve("asgi", "--http", "2")
    granc_only()
    sock = s.connect()
    sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    out = recv_all(sock)
    assert b"HTTP/1" not in out, out[:300]
    g = goaway_of(parse_frames(out))
    assert g is not None, f"no GOAWAY: {out[:200]!r}"
    assert g[1] == PROTOCOL_ERROR, g
    assert h2c(s).get("/info").status == 200


def test_http1_only_never_answers_h2(serve):
    s = serve("asgi", "--http", "1")
    sock = s.connect()
    sock.sendall(PREFACE + settings_frame())
    out = recv_all(sock)
    assert out == b"" or out.startswith(b"HTTP/1."), out[:200]
    if out:
        status = int(out.split(b" ", 2)[1])
        assert status in (400, 505), out[:200]
    assert http1(s).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("mode,alpn,want", [
    ("auto", ("h2", "http/1.1"), "h2"),
    ("auto", ("http/1.1",), "http/1.1"),
    ("2", ("h2", "http/1.1"), "h2"),
    ("2", ("http/1.1",), None),
    ("1", ("h2", "http/1.1"), "http/1.1"),
    ("1", ("h2",), None),
])
def test_tls_alpn(serve, mode, alpn, want):
    s = serve("asgi", "--http", mode, tls=True)
    try:
        sock = tls_sock(s.port, alpn)
    except (ssl.SSLError, ConnectionResetError) as e:
        assert want is None, f"handshake failed: {e}"
        return
    got = sock.selected_alpn_protocol()
    if want is None:
        # the server offers nothing the client takes: no ALPN at all (or the
        # handshake fails, above); never the protocol the server does not speak
        assert got is None, got
        sock.close()
        return
    assert got == want
    if want == "h2":
        st = H2C(sock).get("/info")
        assert st.status == 200 and st.json()["version"] == "2"
        assert st.json()["scheme"] == "https"
    else:
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = recv_all(sock)
        assert out.startswith(b"HTTP/1.1 200 "), out[:200]


@pytest.mark.parametrize("mode,want", [("auto", "2"), ("2", "2"), ("1", "1.1")])
def test_tls_curl_and_s_client(serve, mode, want):
    s = serve("wsgi", "--http", mode, tls=True)
    r = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        f"https://127.0.0.1:{s.port}/info"], capture_output=True, text=True, timeout=30)
    assert r.stdout == f"{want} 200", (r.stdout, r.stderr)
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}", "-alpn", "h2,http/1.1"],
                       input="", capture_output=True, text=True, timeout=30)
    alpn = "h2" if want == "2" else "http/1.1"
    assert f"ALPN protocol: {alpn}" in r.stdout, r.stdout[-2000:]


def test_tls_wrong_preface_after_alpn_h2(serve):
    s = serve("asgi", tls=True)
    sock = tls_sock(s.port, ("h2",))
    assert sock.selected_alpn_protocol() == "h2"
    sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    out = recv_all(sock)
    assert b"HTTP/1" not in out, out[:300]
    g = goaway_of(parse_frames(out))
    assert g is not None and g[1] == PROTOCOL_ERROR, (g, out[:100])


def test_no_h2c_upgrade(serve):
    s = serve("asgi")
    sock = s.connect()
    sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = sock.recv(65536)
        assert b, head
        head += b
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    status, headers, body, rest = read_response(sock, head)
    assert status == 200
    assert json.loads(body)["version"] == "1.1", body
    assert rest == b""
    # still HTTP/1.1 on that connection: a second request, no h2 frames
    sock.sendall(b"GET /big?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body, rest = read_response(sock)
    assert status == 200 and body == pattern(3)


# ===========================================================================
# what apps see
# ===========================================================================

@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
@pytest.mark.parametrize("iface", IFACES)
def test_scope(serve, iface, tls):
    s = serve(iface, tls=tls)
    c = h2c(s)
    st = c.get("/info?x=1&y=%20z", authority="example.com:1234", headers=[("x-thing", "v")])
    assert st.status == 200
    j = st.json()
    scheme = "https" if tls else "http"
    assert j["method"] == "GET" and j["path"] == "/info" and j["query"] == "x=1&y=%20z"
    assert j["scheme"] == scheme
    names = [k for k, v in j["headers"]]
    assert not [n for n in names if n.startswith(":")], names
    assert ["x-thing", "v"] in j["headers"]
    if iface == "rsgi":   # the brief: scope.authority; a host header is optional (Granian: none)
        assert j["host"] in (None, "example.com:1234"), j["host"]
    else:
        assert j["host"] == "example.com:1234"
    if iface == "asgi":
        assert j["version"] == "2"
        assert j["headers"][0] == ["host", "example.com:1234"], j["headers"]
    elif iface == "wsgi":
        assert j["version"] == "HTTP/2"
        assert not [k for k in j["environ_keys"] if ":" in k], j["environ_keys"]
    else:
        assert j["version"] == "2"
        assert j["authority"] == "example.com:1234"
    # POST with a body, on the same connection
    st = c.post("/info?p", b"abc", headers=[("content-type", "text/plain")])
    assert st.status == 200 and st.json()["method"] == "POST" and st.json()["query"] == "p"


@pytest.mark.parametrize("iface", IFACES)
def test_split_cookies(serve, iface):
    """Two `cookie` fields (RFC 9113 8.2.3 lets clients split them).  WSGI:
    one HTTP_COOKIE joined with "; " (the brief; Granian joins with ";").
    ASGI and RSGI: no crumb lost (Granian's issue #287), either as Granian
    has it (separate entries; granian-reference.md part 2, 4.3) or joined
    into one field as RFC 9113 8.2.3 says and granc documents
    (docs/compatibility.md: joined for every interface)."""
    s = serve(iface)
    st = h2c(s).get("/info", headers=[("cookie", "a=1"), ("x-between", "1"), ("cookie", "b=2")])
    assert st.status == 200
    j = st.json()
    if iface == "wsgi":
        assert j["cookie"] == "a=1; b=2"
    else:
        assert j["cookie"] in (["a=1", "b=2"], ["a=1; b=2"]), j["cookie"]


@pytest.mark.parametrize("iface", IFACES)
def test_response_headers(serve, iface):
    s = serve(iface)
    st = h2c(s).get("/conn_hdrs")
    assert st.status == 200 and bytes(st.data) == b"hello"
    names = [k for k, v in st.headers]
    assert all(n == n.lower() for n in names), names
    for bad in ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"):
        assert bad not in names, st.headers
    assert st.header("x-mixed-case") == "yes"
    assert st.header("content-length") == "5"
    if not HYPERCORN:
        assert st.header("server") and st.header("date"), st.headers
    assert names[0] == ":status" and names.count(":status") == 1


@pytest.mark.parametrize("iface", IFACES)
def test_head_no_body(serve, iface):
    s = serve(iface)
    c = h2c(s)
    st = c.wait(c.request("HEAD", "/big?n=1000"))
    assert st.status == 200 and bytes(st.data) == b""
    assert st.data_frames == 0 and st.headers_end, "HEAD: a DATA frame was sent"
    assert st.header("content-length") in (None, "1000")
    assert c.get("/big?n=10").data == pattern(10)


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("iface", IFACES)
def test_no_body_statuses(serve, iface, code):
    s = serve(iface)
    st = h2c(s).get(f"/status?code={code}")
    assert st.status == code and bytes(st.data) == b""
    assert st.data_frames == 0 and st.headers_end, "a DATA frame was sent"
    assert st.header("x-status") == str(code)
    assert st.header("content-length") in (None, "0")


# ===========================================================================
# bodies
# ===========================================================================

ECHO = [("wsgi", "/echo"), ("asgi", "/echo"), ("rsgi", "/echo"), ("rsgi", "/echo_iter")]


@pytest.mark.parametrize("size", [0, 1, 16 * KiB, MiB, 8 * MiB],
                         ids=["0", "1", "16K", "1M", "8M"])
@pytest.mark.parametrize("iface,route", ECHO)
def test_echo(serve, iface, route, size):
    s = serve(iface)
    data = os.urandom(size)
    st = h2c(s).post(route, data)
    assert st.status == 200
    assert len(st.data) == size and bytes(st.data) == data


@pytest.mark.parametrize("iface", IFACES)
def test_download_small_window(serve, iface):
    s = serve(iface)
    n = 16 * MiB
    c = h2c(s, stream_window=16 * KiB, conn_window=None)
    st = c.get(f"/big?n={n}", timeout=120)
    assert st.status == 200 and st.header("content-length") == str(n)
    assert len(st.data) == n and bytes(st.data) == pattern(n)
    assert st.data_frames >= n // (16 * KiB)


@pytest.mark.parametrize("iface,route", ECHO)
def test_slow_body_many_frames(serve, iface, route):
    s = serve(iface)
    c = h2c(s)
    sid = c.request("POST", route, end=False)
    parts = [os.urandom(100 + i) for i in range(150)]
    for p in parts:
        c.send(sid, p, end=False)
        time.sleep(0.003)
    c.send(sid, b"", end=True)
    st = c.wait(sid)
    assert st.status == 200 and bytes(st.data) == b"".join(parts)


@pytest.mark.parametrize("iface", IFACES)
def test_upload_rss_bounded(serve, iface):
    s = serve(iface, rss=True)
    n = 64 * MiB
    w = RssWatch(worker_pid(s))
    c = h2c(s, timeout=120)
    sid = c.request("POST", "/digest", end=False)
    block = os.urandom(MiB)
    h = hashlib.sha256()
    for _ in range(n // MiB):
        c.send(sid, block, end=False)
        h.update(block)
    c.send(sid, b"", end=True)
    st = c.wait(sid, 120)
    growth = w.stop()
    assert st.status == 200, bytes(st.data)[:200]
    assert st.json() == {"length": n, "sha256": h.hexdigest()}
    print(f"{iface}: worker RSS +{growth:.1f} MiB over a {n // MiB} MiB upload")
    assert growth < 40 * MEM, f"RSS grew {growth:.1f} MiB"


# ===========================================================================
# concurrency
# ===========================================================================

@pytest.mark.parametrize("iface", IFACES)
def test_100_concurrent_streams(serve, iface):
    s = serve(iface)
    c = h2c(s)
    bodies = {}
    for i in range(100):
        body = f"stream {i} ".encode() * (i + 1)
        bodies[c.request("POST", "/echo", body=body)] = body
    for sid, body in bodies.items():
        st = c.wait(sid)
        assert st.status == 200 and bytes(st.data) == body, sid
    assert len(set(bodies)) == 100


def test_many_connections_curl(serve):
    """200 connections, 50 at a time, one curl each (curl 7.88 cannot reuse
    a prior-knowledge connection: "Error in the HTTP2 framing layer" on the
    second request, against Hypercorn as well, so no -Z)."""
    s = serve("asgi")
    results = []
    for base in range(0, 200, 50):
        procs = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                                   "-w", "%{http_version} %{http_code} %{size_download}",
                                   f"{s.url}/big?n={i}"], stdout=subprocess.PIPE, text=True)
                 for i in range(base, base + 50)]
        results += [p.communicate(timeout=60)[0] for p in procs]
    assert [r.rsplit(" ", 1)[0] for r in results] == ["2 200"] * 200, set(results)
    assert [int(r.split()[2]) for r in results] == list(range(200))


def h2load(url, *args):
    r = subprocess.run(["h2load", *args, url], capture_output=True, text=True, timeout=180)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", r.stdout)
    assert m, r.stdout + r.stderr
    return [int(x) for x in m.groups()], r.stdout


def test_h2load_many_connections(serve):
    s = serve("asgi")
    (total, _, done, ok, failed, errored, tout), out = h2load(s.url + "/", "-n", "2000", "-c", "10",
                                                              "-m", "10")
    assert (done, ok, failed, errored, tout) == (2000, 2000, 0, 0, 0), out
    assert "status codes: 2000 2xx" in out, out


@pytest.mark.parametrize("iface", IFACES)
def test_h2load(serve, iface):
    s = serve(iface)
    (total, _, done, ok, failed, errored, tout), out = h2load(s.url + "/", "-n", "1000", "-c", "4",
                                                              "-m", "10")
    assert (done, ok, failed, errored, tout) == (1000, 1000, 0, 0, 0), out
    assert "status codes: 1000 2xx" in out, out


@pytest.mark.parametrize("iface", IFACES)
def test_curl_and_nghttp(serve, iface):
    s = serve(iface)
    data = os.urandom(100 * KiB)
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", "@-",
                        "-H", "content-type: application/octet-stream",
                        "-w", "\n%{http_version} %{http_code}", s.url + "/echo"],
                       input=data, capture_output=True, timeout=30)
    body, _, tail = r.stdout.rpartition(b"\n")
    assert tail == b"2 200" and body == data, (tail, r.stderr)
    r = subprocess.run(["nghttp", "-n", "-s", s.url + "/big?n=300000"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["nghttp", s.url + "/big?n=300000"], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == pattern(300000), r.stderr
    r = subprocess.run(["nghttp", "-v", s.url + "/info"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and re.search(r"recv \(stream_id=\d+\) :status: 200", r.stdout), r.stdout


# ===========================================================================
# trailers, files
# ===========================================================================

def test_asgi_trailers(serve):
    s = serve("asgi")
    c = h2c(s)
    st = c.get("/trailers", headers=[("te", "trailers")])
    assert st.status == 200 and bytes(st.data) == b"datamore"
    assert st.trailers == [("x-checksum", "abc123"), ("x-count", "2")], st.trailers
    assert "TrailersReceived" in c.events
    # on the wire: the last frame of the stream is a HEADERS with END_STREAM
    r = raw_conn(s)
    r.request(1, path="/trailers", extra=[("te", "trailers")])
    resp = r.response(1)
    assert resp.trailers == [("x-checksum", "abc123"), ("x-count", "2")]
    last = [f for f in r.frames if f[2] == 1][-1]
    assert last[0] in (HEADERS, CONTINUATION) and resp.ended
    hdrs = [f for f in r.frames if f[2] == 1 and f[0] == HEADERS]
    assert len(hdrs) == 2 and hdrs[-1][1] & END_STREAM


@pytest.fixture(scope="module")
def bigfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("h2files") / "blob.bin"
    p.write_bytes(os.urandom(5 * MiB + 123))
    return str(p)


@pytest.mark.parametrize("iface", IFACES)
def test_file_response(serve, iface, bigfile):
    s = serve(iface)
    st = h2c(s).get(f"/file?path={bigfile}", timeout=60)
    assert st.status == 200
    with open(bigfile, "rb") as f:
        want = f.read()
    assert len(st.data) == len(want) and bytes(st.data) == want


# ===========================================================================
# protocol basics (raw)
# ===========================================================================

def test_settings_first_ack_and_ping(serve):
    s = serve("asgi")
    r = Raw(connect(s)).hello(settings={S_MAX_FRAME_SIZE: 32768})
    f = r.until(lambda f: True)
    assert f[0] == SETTINGS and f[1] == 0 and f[2] == 0, f
    assert len(f[3]) % 6 == 0
    if not HYPERCORN:
        assert r.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 200, r.server_settings
    ack = r.until(lambda f: f[0] == SETTINGS and f[1] & ACK)
    assert ack is not None and ack[3] == b"" and ack[2] == 0
    r.send(frame(PING, 0, 0, b"12345678"))
    p = r.until(lambda f: f[0] == PING)
    assert p is not None and p[1] == ACK and p[3] == b"12345678" and p[2] == 0
    r.request(1)
    assert r.response(1).status == 200


def test_settings_from_options(serve):
    s = serve("asgi", "--http2-max-concurrent-streams", "10",
              "--http2-initial-stream-window-size", "131072",
              "--http2-max-frame-size", "32768", "--http2-max-headers-size", "8192")
    r = raw_conn(s)
    r.until(lambda f: f[0] == SETTINGS)
    st = r.server_settings
    assert st.get(S_MAX_CONCURRENT_STREAMS) == 10, st
    assert st.get(S_INITIAL_WINDOW_SIZE) == 131072, st
    assert st.get(S_MAX_FRAME_SIZE) == 32768, st
    assert st.get(S_MAX_HEADER_LIST_SIZE) == 8192, st
    r.request(1)
    assert r.response(1).status == 200


@pytest.mark.parametrize("iface", IFACES)
def test_rst_stream_cancels(serve, iface):
    s = serve(iface)
    c = h2c(s)
    sid = c.request("GET", "/slow?t=2&n=10")
    time.sleep(0.3)
    c.conn.reset_stream(sid, CANCEL)
    c.flush()
    t0 = time.monotonic()
    st = c.get("/big?n=1000")
    assert st.status == 200 and bytes(st.data) == pattern(1000)
    if iface != "wsgi":              # a WSGI app may hold the only thread
        assert time.monotonic() - t0 < 1.2
    assert c.streams[sid].status is None
    assert c.get("/info").status == 200


def test_priority_ignored(serve):
    s = serve("asgi")
    r = raw_conn(s)
    prio = struct.pack(">IB", 0, 200)
    r.send(frame(PRIORITY, 0, 1, prio), frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 10)))
    r.request(1)
    r.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16)))
    # HEADERS carrying a priority block
    blk = struct.pack(">IB", 0x80000000 | 0, 15) + req_block(path="/big?n=20")
    r.send(frame(HEADERS, END_STREAM | END_HEADERS | PRIO, 5, blk))
    assert r.response(1).status == 200
    resp = r.response(5)
    assert resp.status == 200 and resp.data == pattern(20)
    assert r.goaway is None


@pytest.mark.parametrize("iface", IFACES)
def test_headers_continuation(serve, iface):
    s = serve(iface)
    r = raw_conn(s)
    blk = req_block(path="/info", extra=[("x-long", "L" * 9000), ("x-after", "z")])
    # HEADERS + 3 CONTINUATION frames
    r.headers(1, blk, max_frame=len(blk) // 4 + 1)
    resp = r.response(1)
    assert resp.status == 200
    h = dict(json.loads(resp.data)["headers"])
    assert h["x-long"] == "L" * 9000 and h["x-after"] == "z"
    r.request(3, path="/big?n=5")                   # the connection goes on
    assert r.response(3).data == pattern(5)


@pytest.mark.parametrize("iface", IFACES)
def test_padded_headers_and_data(serve, iface):
    s = serve(iface)
    r = raw_conn(s)
    r.headers(3, req_block("POST", "/echo"), end_stream=False, padding=17)
    body = os.urandom(3000)
    r.send(frame(DATA, PADDED, 3, bytes([200]) + body[:1000] + b"\0" * 200),
           frame(DATA, PADDED, 3, bytes([0]) + body[1000:2000]),
           frame(DATA, PADDED | END_STREAM, 3, bytes([5]) + body[2000:] + b"\0" * 5))
    resp = r.response(3)
    assert resp.status == 200 and resp.data == body


@pytest.mark.parametrize("iface", IFACES)
def test_hpack_huffman_dynamic_table(serve, iface):
    s = serve(iface)
    c = h2c(s)
    extra = [("x-custom-name", ("a rather long value that gets indexed " * 3).strip()),
             ("user-agent", "h2-test-client/1.0"), ("accept-language", "en-GB,en;q=0.9")]
    for i in range(4):
        st = c.get(f"/info?i={i}", headers=extra + [("x-i", str(i))])
        assert st.status == 200
        h = st.json()["headers"]
        for k, v in extra:
            assert [k, v] in h, (k, h)
        assert ["x-i", str(i)] in h
    # the h2 encoder did use its dynamic table (client-side check)
    assert len(c.conn.encoder.header_table.dynamic_entries) >= len(extra)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
@pytest.mark.parametrize("iface", IFACES)
def test_connection_error_mid_body(serve, iface, tls):
    """A connection error while the app waits for the request body (h2spec
    http2/4.2/2: a DATA frame over SETTINGS_MAX_FRAME_SIZE): GOAWAY
    FRAME_SIZE_ERROR, and the connection closes whether or not the client
    closes first (no socket left in CLOSE-WAIT, the app's stream is let go),
    and the server stops on SIGTERM."""
    s = serve(iface, tls=tls)
    try:
        _error_mid_body(s)
    except AssertionError:
        kill(s)
        raise


def _error_mid_body(s):
    for attempt in range(6):
        r = raw_conn(s)
        r.until(lambda f: f[0] == SETTINGS)
        r.headers(1, req_block("POST", "/"), end_stream=False)
        r.send(frame(DATA, 0, 1, b"abc"))
        time.sleep(0.05)                  # the app is in its body read now
        r.send(frame(DATA, END_STREAM, 1, b"x" * 16385))
        g = r.until(lambda f: f[0] == GOAWAY, timeout=5)
        assert g is not None, f"closed without GOAWAY; {summary(r.frames)}"
        assert r.goaway[1] == 6, r.goaway             # FRAME_SIZE_ERROR
        if attempt % 2:
            r.read_to_eof(timeout=5)                  # fails if it stays open
        r.sock.close()
    deadline = time.monotonic() + 3
    while close_wait(s.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = close_wait(s.port)
    s.proc.send_signal(signal.SIGTERM)
    try:
        s.proc.wait(10 * SLOW)
        stopped = True
    except subprocess.TimeoutExpired:
        stopped = False
        kill(s)
    assert not left, f"{len(left)} of 6 connections left in CLOSE-WAIT:\n" + "\n".join(left) + \
        ("" if stopped else "\nand the server did not stop 10 s after SIGTERM")
    assert stopped, "not stopped 10 s after SIGTERM"


def close_wait(port):
    """The server's sockets on port that the peer has closed and the server
    has not (CLOSE-WAIT), as `ss` lists them."""
    out = subprocess.run(["ss", "-tan", "state", "close-wait", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[1:] if line.strip()]


def kill(s):
    """SIGKILL a server that does not stop (so that the teardown does not
    wait 30 s more for it), workers first."""
    for pid in s.worker_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    s.proc.kill()
    s.proc.wait()


# ===========================================================================
# graceful stop
# ===========================================================================

@pytest.mark.parametrize("iface", IFACES)
def test_graceful_stop(serve, iface):
    s = serve(iface)
    r = raw_conn(s, timeout=30)
    n = 200_000
    r.request(1, path=f"/slow?t=2&n={n}")
    r.request(3, path="/info")
    assert r.response(3).status == 200
    time.sleep(0.5 * SLOW)
    s.proc.send_signal(signal.SIGTERM)
    g = r.until(lambda f: f[0] == GOAWAY, timeout=10)
    assert g is not None, "closed without GOAWAY"
    last = int.from_bytes(g[3][:4], "big") & 0x7FFFFFFF
    code = int.from_bytes(g[3][4:8], "big")
    assert code == NO_ERROR and last >= 1, (last, code)
    if last == 0x7FFFFFFF:           # the two-phase shutdown: a second GOAWAY follows
        g = r.until(lambda f: f[0] == GOAWAY and int.from_bytes(f[3][:4], "big") != 0x7FFFFFFF)
        assert g is not None and int.from_bytes(g[3][4:8], "big") == NO_ERROR
        assert int.from_bytes(g[3][:4], "big") >= 3
    # a stream opened after the GOAWAY is not served
    try:
        r.request(101, path="/info")
    except OSError:
        pass
    resp = r.response(1, timeout=20 * SLOW)
    assert resp.status == 200 and resp.data == pattern(n), (resp.status, len(resp.data))
    r.read_to_eof(timeout=20 * SLOW)
    late = r.resp.get(101)
    assert late is None or late.status is None, late.headers


# ===========================================================================
# limits
# ===========================================================================

def healthy(s):
    """A fresh connection gets a 200."""
    st = h2c(s).get("/big?n=100")
    assert st.status == 200 and bytes(st.data) == pattern(100)


class Reader(threading.Thread):
    """Reads a Raw's frames until EOF (or until stopped) in a thread."""

    def __init__(self, raw, timeout=60):
        super().__init__(daemon=True)
        self.raw, self.timeout, self.done = raw, timeout, threading.Event()
        self.goaway_at = None
        self.error = None
        self.start()

    def run(self):
        self.raw.sock.settimeout(self.timeout)
        try:
            while self.raw.frame() is not None:
                if self.raw.goaway and self.goaway_at is None:
                    self.goaway_at = time.monotonic()
        except Exception as e:               # noqa: BLE001 (timeout: reported below)
            self.error = e
        self.done.set()


def flood(r, make, count, batch=500):
    """Send count frames built by make(i) in batches; stop at the first
    send error (the server closed).  Returns how many were sent."""
    sent = 0
    try:
        while sent < count:
            k = min(batch, count - sent)
            r.send(*[make(sent + i) for i in range(k)])
            sent += k
    except OSError:
        pass
    return sent


def test_rapid_reset(serve):
    s = serve("asgi", rss=True)
    w = RssWatch(worker_pid(s))
    r = raw_conn(s, timeout=60)
    rd = Reader(r)
    blk = req_block(path="/slow?t=1")

    def pair(i):
        sid = 1 + 2 * i
        return frame(HEADERS, END_STREAM | END_HEADERS, sid, blk) + rst_frame(sid, CANCEL)
    sent = flood(r, pair, 20_000, batch=200)
    assert rd.done.wait(30 * SLOW), f"not closed after {sent} pairs: {summary(r.frames)}"
    growth = w.stop()
    assert r.goaway is not None, f"no GOAWAY after {sent} pairs; {summary(r.frames)}"
    assert r.goaway[1] == ENHANCE_YOUR_CALM, r.goaway
    assert r.eof
    print(f"rapid reset: GOAWAY after {sent} pairs sent, RSS +{growth:.1f} MiB")
    assert growth < 64 * MEM
    healthy(s)


def test_continuation_flood(serve):
    s = serve("asgi", rss=True)
    w = RssWatch(worker_pid(s))
    r = raw_conn(s, timeout=60)
    rd = Reader(r)
    total = 10 * MiB
    chunk = b"".join(hp_lit(f"x-h{i}", "v" * 1000) for i in range(16))[:16000]
    r.send(frame(HEADERS, END_STREAM, 1, req_block(path="/info")))
    sent = 0
    try:
        while sent < total and not rd.done.is_set():
            r.send(frame(CONTINUATION, 0, 1, chunk))
            sent += len(chunk)
    except OSError:
        pass
    assert rd.done.wait(30 * SLOW), f"not closed; {summary(r.frames)}"
    growth = w.stop()
    assert r.goaway is not None, f"closed without GOAWAY; {summary(r.frames)}"
    print(f"continuation flood: GOAWAY {r.goaway} after {sent >> 10} KiB, RSS +{growth:.1f} MiB")
    assert sent < total, "the server read all 10 MiB of one header block"
    assert not any(f[0] == HEADERS and f[2] == 1 for f in r.frames), "stream 1 answered"
    assert growth < 32 * MEM
    healthy(s)


def test_hpack_bomb(serve):
    s = serve("asgi", rss=True)
    w = RssWatch(worker_pid(s))
    r = raw_conn(s, timeout=30)
    # stream 1: a normal request that inserts a 4 KiB value into the table
    # (dynamic index 62); stream 3 references it 10,000 times (40 MB)
    big = "B" * 4000
    r.headers(1, req_block(path="/info") + hp_lit("x-bomb", big, index=True))
    first = r.response(1)
    assert first.status in (200, 431), first.headers
    r.headers(3, req_block(path="/info") + bytes([0x80 | 62]) * 10_000)
    resp = r.response(3, timeout=30)
    growth = w.stop()
    print(f"hpack bomb: stream 3 status={resp.status} rst={resp.rst} goaway={r.goaway} "
          f"RSS +{growth:.1f} MiB")
    assert resp.status == 431 or resp.rst is not None or r.goaway is not None, summary(r.frames)
    assert resp.status != 200
    assert growth < 64 * MEM
    healthy(s)


def test_oversize_header_list(serve):
    s = serve("asgi", "--http2-max-headers-size", "4096", rss=True)
    w = RssWatch(worker_pid(s))
    r = raw_conn(s)
    r.until(lambda f: f[0] == SETTINGS)
    extra = [(f"x-big-{i}", "h" * 1000) for i in range(8)]
    r.headers(1, req_block(path="/info", extra=extra))
    resp = r.response(1)
    assert resp.status == 431, (resp.headers, resp.rst, summary(r.frames))
    r.request(3, path="/big?n=50")
    ok = r.response(3)
    assert ok.status == 200 and ok.data == pattern(50)
    assert r.goaway is None
    for i in range(200):              # many refused lists, on one connection
        r.headers(5 + 2 * i, req_block(path="/info", extra=extra))
    r.response(5 + 2 * 199, timeout=30)
    assert {r.resp[5 + 2 * i].status for i in range(200)} == {431}
    growth = w.stop()
    assert growth < 32 * MEM, f"RSS grew {growth:.1f} MiB"
    healthy(s)


def flood_outcome(s, r, rd, count, what, final_check):
    """The two acceptable outcomes of a flood: GOAWAY ENHANCE_YOUR_CALM and
    a close, or everything answered and the connection still working."""
    if r.goaway is not None:
        assert r.goaway[1] == ENHANCE_YOUR_CALM, (what, r.goaway)
        assert rd.done.wait(10 * SLOW), f"{what}: GOAWAY but no close"
        return "goaway"
    assert not rd.done.is_set(), f"{what}: closed without GOAWAY; {summary(r.frames)}"
    final_check()
    return "served"


@pytest.mark.parametrize("kind", ["settings", "ping", "ping_read", "empty_data", "window_update"])
def test_floods(serve, kind):
    s = serve("asgi", rss=True)
    w = RssWatch(worker_pid(s))
    r = raw_conn(s, timeout=60)
    r.until(lambda f: f[0] == SETTINGS)
    n = 100_000
    reader = None
    if kind == "ping_read":
        reader = Reader(r)
    if kind == "settings":
        make = lambda i: settings_frame({S_INITIAL_WINDOW_SIZE: 1 << 20})   # noqa: E731
    elif kind.startswith("ping"):
        make = lambda i: frame(PING, 0, 0, struct.pack(">Q", i))          # noqa: E731
    elif kind == "empty_data":
        r.headers(1, req_block("POST", "/digest"), end_stream=False)
        make = lambda i: frame(DATA, 0, 1)                                 # noqa: E731
    else:
        make = lambda i: wu_frame(0, 1)                                    # noqa: E731
    box = {}
    sender = threading.Thread(target=lambda: box.setdefault("sent", flood(r, make, n)), daemon=True)
    t0 = time.monotonic()
    sender.start()
    # not reading (unless ping_read) while the flood goes out: at most 5 s
    sender.join(5)
    if reader is None:
        reader = Reader(r)
    sender.join(60 * SLOW)
    assert not sender.is_alive(), f"{kind}: the flood could not be sent in 60 s (hang)"

    def acked(t, fl, want):
        return sum(1 for f in r.frames if f[0] == t and f[1] & fl) >= want

    def final():
        deadline = time.monotonic() + 30 * SLOW
        if kind == "settings":
            cond = lambda: acked(SETTINGS, ACK, n + 1)                  # noqa: E731
        elif kind.startswith("ping"):
            cond = lambda: acked(PING, ACK, n)                          # noqa: E731
        else:
            cond = lambda: True                                          # noqa: E731
        while not cond() and not reader.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cond(), f"{kind}: not all answered; {summary(r.frames)}"
        if kind == "empty_data":
            r.send(frame(DATA, END_STREAM, 1, b"xyz"))
            while 1 not in r.resp or not r.resp[1].ended:
                assert time.monotonic() < deadline and not reader.done.is_set(), summary(r.frames)
                time.sleep(0.05)
            assert r.resp[1].status == 200 and json.loads(r.resp[1].data)["length"] == 3
        r.headers(101, req_block(path="/big?n=7"))
        while 101 not in r.resp or not r.resp[101].ended:
            assert time.monotonic() < deadline and not reader.done.is_set(), summary(r.frames)
            time.sleep(0.05)
        assert r.resp[101].data == pattern(7)

    # give the server time to answer / give up
    deadline = time.monotonic() + 20 * SLOW
    while r.goaway is None and not reader.done.is_set() and time.monotonic() < deadline:
        if kind.startswith("ping") and acked(PING, ACK, n):
            break
        if kind == "settings" and acked(SETTINGS, ACK, n + 1):
            break
        if kind in ("empty_data", "window_update") and time.monotonic() - t0 > 1.5 * SLOW:
            break
        time.sleep(0.05)
    how = flood_outcome(s, r, reader, n, kind, final)
    growth = w.stop()
    print(f"{kind} flood: {how}, sent {box.get('sent')}, RSS +{growth:.1f} MiB")
    assert growth < 64 * MEM, f"RSS grew {growth:.1f} MiB"
    healthy(s)


@pytest.mark.slow
def test_zero_window_stall(serve):
    s = serve("asgi")
    r = raw_conn(s, timeout=120, window=None, settings={S_INITIAL_WINDOW_SIZE: 0})
    r.request(1, path=f"/big?n={4 * MiB}")
    rd = Reader(r, timeout=120)
    t0 = time.monotonic()
    # meanwhile the server serves others
    for _ in range(3):
        healthy(s)
        time.sleep(1)
    stalled_for = None
    while not rd.done.is_set() and time.monotonic() - t0 < 100:
        resp = r.resp.get(1)
        if resp is not None and resp.rst is not None or r.goaway is not None:
            stalled_for = time.monotonic() - t0
            break
        time.sleep(0.2)
    if rd.done.is_set() and stalled_for is None:
        stalled_for = time.monotonic() - t0
    assert stalled_for is not None, "a zero-window stream held for 100 s"
    if r.goaway is not None:          # a connection error: the connection ends too
        assert rd.done.wait(10), f"GOAWAY {r.goaway} but the connection stays open"
    print(f"zero window: given up after {stalled_for:.1f} s "
          f"(rst={r.resp.get(1) and r.resp[1].rst}, goaway={r.goaway}, eof={rd.done.is_set()})")
    healthy(s)


def test_streams_beyond_maximum(serve):
    s = serve("asgi", "--http2-max-concurrent-streams", "10")
    r = raw_conn(s, timeout=30)
    r.until(lambda f: f[0] == SETTINGS)
    assert r.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 10
    sids = [1 + 2 * i for i in range(15)]
    r.send(*[frame(HEADERS, END_STREAM | END_HEADERS, sid, req_block(path=f"/slow?t=1&n={sid}"))
             for sid in sids])
    for sid in sids:
        r.response(sid, timeout=15 * SLOW)
    ok = [sid for sid in sids if r.resp[sid].status == 200]
    refused = {sid: r.resp[sid].rst for sid in sids if r.resp[sid].rst is not None}
    assert ok == sids[:10], (ok, refused)
    for sid in ok:
        assert r.resp[sid].data == pattern(sid)
    assert sorted(refused) == sids[10:], refused
    assert set(refused.values()) <= {REFUSED_STREAM, PROTOCOL_ERROR}, refused
    if r.goaway is None:
        r.request(41, path="/big?n=3")
        assert r.response(41).status == 200


def test_backpressure_limits_h2_streams(serve):
    s = serve("wsgi", "--backpressure", "2", "--blocking-threads", "4")
    c = h2c(s)
    sids = [c.request("GET", "/conc?t=0.4") for _ in range(10)]
    maxes = []
    for sid in sids:
        st = c.wait(sid, 60)
        assert st.status == 200 and bytes(st.data) == b"ok"
        maxes.append(int(st.header("x-max-concurrency")))
    assert max(maxes) <= 2, maxes


# ===========================================================================
# operations
# ===========================================================================

@pytest.mark.parametrize("iface", IFACES)
def test_access_log(serve, iface):
    s = serve(iface, "--access-log")
    assert h2c(s).get("/info").status == 200
    deadline = time.monotonic() + 5
    while '"GET /info HTTP/2"' not in s.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(r'"GET /info HTTP/2" 200', s.log()), s.log()[-2000:]


def test_metrics_count_h2(serve):
    from test_metrics import metrics_port, scrape, total, wait_until
    s = serve("asgi", "--metrics", "--metrics-port", "0")
    s.mport = metrics_port(s)
    before = scrape(s)
    c = h2c(s)
    for _ in range(5):
        assert c.get("/info").status == 200
    want = total(before, "requests_handled") + 5
    fams = wait_until(s, lambda f: total(f, "requests_handled") >= want)
    assert total(fams, "requests_handled") == want
    assert total(fams, "connections_handled") == total(before, "connections_handled") + 1


@pytest.mark.parametrize("iface", ["asgi", "wsgi"])
def test_url_path_prefix(serve, iface):
    s = serve(iface, "--url-path-prefix", "/p")
    j2 = h2c(s).get("/p/info?q=1").json()
    out = http1(s, b"GET /p/info?q=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    body = out.split(b"\r\n\r\n", 1)[1]
    j1 = json.loads(body[:body.rindex(b"}") + 1])
    for k in ("path", "root_path", "query", "method"):
        assert j2[k] == j1[k], (k, j2[k], j1[k])
    assert j2["root_path"] == "/p"
