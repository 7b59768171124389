"""HTTP/1.1 protocol behaviour of granc, black-box, over real sockets.

Raw sockets for malformed input and exact protocol checks; httpx and curl
where a real client is the point.  The policy under test is the comment at
the top of http.c and DESIGN.md section 4: strict RFC 9112, every refusal
answered with an exact status and then a close, and the server unharmed.
"""
import email.utils
import json
import os
import socket
import subprocess
import threading
import time

import httpx
import pytest

from conftest import ASAN, Server

SLOW = 3 if ASAN else 1          # time scale for the few timing assertions
GOOD = b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class Resp:
    def __init__(self, status, reason, headers, body, raw_body, head):
        self.status, self.reason, self.headers = status, reason, headers
        self.body, self.raw_body, self.head = body, raw_body, head

    def get(self, name, default=None):
        vals = self.all(name)
        return vals[0] if vals else default

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)


class Conn:
    """One client connection with a read buffer kept across responses."""

    def __init__(self, server, timeout=10):
        self.sock = server.connect(timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("connection closed by the server")
        self.buf += b

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        proto, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert proto == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            k, v = line.split(":", 1)
            assert k == k.strip() and k, line
            headers.append((k.lower(), v.strip()))
        return int(status), reason, headers, head

    def response(self, method="GET"):
        """Read one response; an interim 1xx is returned like any other."""
        status, reason, headers, head = self.read_head()
        r = Resp(status, reason, headers, b"", b"", head)
        if method == "HEAD" or status < 200 or status in (204, 304):
            return r
        te, cl = r.get("transfer-encoding"), r.get("content-length")
        if te is not None:
            assert te == "chunked" and cl is None, head
            body = b""
            pos = 0
            while True:
                while b"\r\n" not in self.buf[pos:]:
                    self._more()
                i = self.buf.index(b"\r\n", pos)
                size = int(self.buf[pos:i], 16)
                pos = i + 2
                while len(self.buf) < pos + size + 2:
                    self._more()
                body += self.buf[pos:pos + size]
                assert self.buf[pos + size:pos + size + 2] == b"\r\n"
                pos += size + 2
                if size == 0:
                    break
            r.raw_body, self.buf = self.buf[:pos], self.buf[pos:]
            r.body = body
            return r
        if cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                self._more()
            r.body = r.raw_body = self.buf[:n]
            self.buf = self.buf[n:]
            return r
        # close-delimited
        r.body = r.raw_body = self.rest()
        return r

    def rest(self):
        """Everything until the server closes (a reset counts as a close)."""
        out, self.buf = self.buf, b""
        try:
            while True:
                b = self.sock.recv(65536)
                if not b:
                    return out
                out += b
        except ConnectionResetError:
            return out

    def assert_closed(self):
        assert self.rest() == b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(server, data, method="GET"):
    with Conn(server) as c:
        c.send(data)
        return c.response(method)


def assert_alive(server):
    """A good request on a new connection still works."""
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nalive")
        r = c.response()
        assert (r.status, r.body) == (200, b"alive")
        c.send(GOOD)
        r = c.response()
        assert (r.status, r.reason, r.body) == (299, "Very Custom", b"ok")


def expect_reject(server, data, status):
    """data is answered with exactly `status`, nothing else follows, the
    connection closes, and the server serves the next client."""
    with Conn(server) as c:
        c.send(data)
        r = c.response()
        assert r.status == status, (data[:200], r.head)
        assert r.get("connection") == "close"
        assert r.get("content-length") == "0"
        assert r.get("server") == "granc"
        assert r.body == b""
        c.assert_closed()           # no second response, then EOF
    assert_alive(server)


def chunked(*parts, trailer=b""):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n" + trailer + b"\r\n"


def post_chunked(path, body_bytes, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
            extra + b"\r\n" + body_bytes)


def post(path, body, extra=b"", version=b"1.1"):
    return (b"POST " + path + b" HTTP/" + version + b"\r\nHost: x\r\nContent-Length: %d\r\n" % len(body) +
            extra + b"\r\n" + body)


@pytest.fixture(scope="module")
def srv():
    """One default server for the many independent, quick cases."""
    with Server("wsgi_app:app") as s:
        yield s


@pytest.fixture(scope="module")
def small():
    """--http1-buffer-size 8192 --http1-max-body-size 1000."""
    with Server("wsgi_app:app", "--http1-buffer-size", "8192",
                "--http1-max-body-size", "1000") as s:
        yield s


# ---------------------------------------------------------------------------
# 1. malformed requests: exact status, then a close, and the server lives on
# ---------------------------------------------------------------------------

H = b"Host: x\r\n"
# A valid pipelined request follows each bad head: it must never be served.
NEXT = GOOD

REJECT = [
    # request line
    ("garbage-line", b"garbage\r\n\r\n", 400),
    ("binary-garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("no-version", b"GET /info\r\n" + H + b"\r\n", 400),
    ("two-spaces", b"GET  /info HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-separator", b"GET\t/info HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("trailing-space", b"GET /info HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("lowercase-http", b"GET /info http/1.1\r\n" + H + b"\r\n", 400),
    ("leading-space", b" GET /info HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("version-two-digits", b"GET /info HTTP/1.10\r\n" + H + b"\r\n", 400),
    ("relative-target", b"GET info HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority-form", b"CONNECT x:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("userinfo-absolute", b"GET http://u@x/info HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("non-ascii-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("five-empty-lines", b"\r\n" * 5 + GOOD, 400),
    # line endings
    ("bare-lf", b"GET /info HTTP/1.1\nHost: x\n\n", 400),
    ("bare-lf-one-field", b"GET /info HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
    ("bare-cr-request-line", b"GET /info HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("bare-cr-in-value", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    ("bare-cr-empty-line", b"\rGET /info HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # field lines
    ("obs-fold", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", 400),
    ("space-before-colon", b"GET /info HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("tab-before-colon", b"GET /info HTTP/1.1\r\nHost: x\r\nX\t: y\r\n\r\n", 400),
    ("paren-in-name", b"GET /info HTTP/1.1\r\nHost: x\r\nX(y: 1\r\n\r\n", 400),
    ("space-in-name", b"GET /info HTTP/1.1\r\nHost: x\r\nX y: 1\r\n\r\n", 400),
    ("non-ascii-name", b"GET /info HTTP/1.1\r\nHost: x\r\nX\xe9: 1\r\n\r\n", 400),
    ("empty-name", b"GET /info HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400),
    ("no-colon", b"GET /info HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    ("ctl-in-value", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
    ("nul-in-value", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    ("del-in-value", b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
    # Host
    ("missing-host-1.1", b"GET /info HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("two-hosts", b"GET /info HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("two-hosts-same", b"GET /info HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400),
    ("two-hosts-1.0", b"GET /info HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    # framing
    ("cl-and-te", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("cl-differ", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Content-Length: 6\r\n\r\nhello!", 400),
    ("cl-differ-list", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    ("cl-alpha", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("cl-negative", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl-plus", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl-hex", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("cl-trailing-junk", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5a\r\n\r\nhello", 400),
    ("cl-inner-space", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", 400),
    ("cl-empty", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400),
    ("cl-19-digits", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n", 400),
    # gzip alone: chunked is not the final coding, so the body length is
    # unknowable -- RFC 9112 6.3 says MUST 400 (and http.c's policy agrees).
    ("te-gzip", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("te-gzip-chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                        b"0\r\n\r\n", 501),
    ("te-gzip-then-chunked-fields", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-chunked-gzip", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te-chunked-twice", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                         b"0\r\n\r\n", 400),
    ("te-chunked-then-empty", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              b"Transfer-Encoding: \r\n\r\n0\r\n\r\n", 400),
    ("te-identity", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    ("te-http-1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # versions
    ("http-2.0", b"GET /info HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http-0.9", b"GET /info HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("http-3.1", b"GET /info HTTP/3.1\r\n" + H + b"\r\n", 505),
    # (the HTTP/2 preface is HTTP/2 now: test_http2.py)
    # sizes
    ("target-8193", b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("target-20k", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("101-headers", b"GET /info HTTP/1.1\r\n" + H +
     b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n", 431),
]


@pytest.mark.parametrize("data,status", [pytest.param(d, s, id=i) for i, d, s in REJECT])
def test_reject(srv, data, status):
    expect_reject(srv, data + NEXT, status)


@pytest.mark.parametrize("data,status", [pytest.param(d, s, id=i) for i, d, s in REJECT[:6]])
def test_reject_without_pipelined_tail(srv, data, status):
    expect_reject(srv, data, status)


def test_reject_head_sent_in_pieces(srv):
    """The answer does not depend on how the bad head is split."""
    data = b"GET /info HTTP/1.1\r\nHost: x\r\nX(y: 1\r\n\r\n"
    with Conn(srv) as c:
        for i in range(0, len(data), 3):
            c.send(data[i:i + 3])
            time.sleep(0.002)
        r = c.response()
        assert r.status == 400 and r.get("connection") == "close"
        c.assert_closed()
    assert_alive(srv)


def test_garbage_refused_before_the_head_ends(srv):
    """A request line that is already wrong is answered without waiting
    for a CRLF CRLF that may never come."""
    with Conn(srv, timeout=5) as c:
        c.send(b"GET /in fo HTTP/1.1\r\nHost: x\r\n")     # two SPs in the line
        r = c.response()
        assert r.status == 400
        c.assert_closed()
    assert_alive(srv)


ACCEPT = [
    ("cl-duplicate-same", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Content-Length: 5\r\n\r\nhello", b"hello"),
    ("cl-list-same", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", b"hello"),
    ("cl-leading-zeros", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\nhello", b"hello"),
    ("cl-18-digits-zero", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 000000000000000005\r\n\r\nhello",
     b"hello"),
    ("te-case", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     b"hello"),
    ("te-empty-elements", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked,\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("ows-around-value", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:  \t5 \t\r\n\r\nhello", b"hello"),
    ("no-ows", b"POST /echo HTTP/1.1\r\nHost:x\r\nContent-Length:5\r\n\r\nhello", b"hello"),
    ("empty-lines-before", b"\r\n\r\n\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
     b"hello"),
    ("obs-text-value", b"POST /echo HTTP/1.1\r\nHost: x\r\nX: caf\xe9\xff\r\nContent-Length: 5\r\n\r\nhello",
     b"hello"),
    ("100-headers", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" +
     b"".join(b"X-%d: v\r\n" % i for i in range(98)) + b"\r\nhello", b"hello"),
]


@pytest.mark.parametrize("data,body", [pytest.param(d, b, id=i) for i, d, b in ACCEPT])
def test_accept(srv, data, body):
    with Conn(srv) as c:
        c.send(data)
        r = c.response()
        assert (r.status, r.body) == (200, body)
        assert r.get("connection") is None
        c.send(GOOD)                     # and the connection is still good
        assert c.response().status == 299


def test_missing_host_http10_is_served(srv):
    r = request(srv, b"GET /info HTTP/1.0\r\n\r\n")
    assert r.status == 200
    assert r.json()["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_http12_is_served_as_11(srv):
    with Conn(srv) as c:
        c.send(b"GET /info HTTP/1.2\r\nHost: x\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert r.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert r.get("connection") is None          # 1.1 semantics: kept alive
        c.send(b"GET /reason HTTP/1.9\r\nHost: x\r\n\r\n")
        assert c.response().status == 299


def test_http12_still_needs_host(srv):
    expect_reject(srv, b"GET /info HTTP/1.2\r\n\r\n", 400)


def test_absolute_form_target(srv):
    r = request(srv, b"GET http://example.com/info?a=1 HTTP/1.1\r\nHost: example.com\r\n"
                     b"Connection: close\r\n\r\n")
    assert r.status == 200
    env = r.json()
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/info", "a=1")


def test_target_8192_is_not_too_long(srv):
    target = b"/" + b"a" * 8191
    r = request(srv, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 404
    assert r.body == b"not found: " + target


def test_head_over_buffer_size_431(small):
    expect_reject(small, b"GET /info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431)


def test_head_over_buffer_size_431_in_pieces(small):
    with Conn(small) as c:
        c.send(b"GET /info HTTP/1.1\r\nHost: x\r\n")
        for _ in range(12):
            c.send(b"X-Big: " + b"a" * 1000 + b"\r\n")
            time.sleep(0.005)
        r = c.response()
        assert r.status == 431
        c.assert_closed()
    assert_alive(small)


def test_head_between_buffer_size_and_16k_431(small):
    expect_reject(small, b"GET /reason HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12000 + b"\r\n\r\n", 431)


def test_head_under_buffer_size_served(small):
    r = request(small, b"GET /reason HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 +
                b"\r\nConnection: close\r\n\r\n")
    assert (r.status, r.body) == (299, b"ok")


# ---- bad chunked bodies ---------------------------------------------------

BAD_CHUNKS = [
    ("zz", b"zz\r\nhello\r\n"),
    ("0x5", b"0x5\r\nhello\r\n"),
    ("space-5", b" 5\r\nhello\r\n"),
    ("17-hex-digits", b"00000000000000005\r\nhello\r\n"),
    ("2^63", b"8000000000000000\r\nhello\r\n"),
    ("empty-size", b"\r\nhello\r\n"),
    ("size-bws-no-ext", b"5 \r\nhello\r\n"),
    ("lf-only", b"5\nhello\r\n"),
    ("no-crlf-after-data", b"5\r\nhelloXX"),
    ("long-extension", b"5;" + b"e" * 2000 + b"\r\nhello\r\n"),
    ("long-extension-many", b"5" + b";a=b" * 400 + b"\r\nhello\r\n"),
    ("ctl-in-extension", b"5;a=\x01\r\nhello\r\n"),
    ("obs-fold-trailer", b"0\r\nX: 1\r\n 2\r\n\r\n"),
]


def _bad_chunk_request(tail):
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n" + tail + b"0\r\n\r\n")


@pytest.mark.parametrize("tail", [pytest.param(t, id=i) for i, t in BAD_CHUNKS])
def test_bad_chunk_never_served(srv, tail):
    """The app never gets a success for a malformed chunked body, the
    connection is closed, and the server survives."""
    with Conn(srv) as c:
        c.send(_bad_chunk_request(tail))
        got = c.rest()
        assert not got.startswith(b"HTTP/1.1 200"), got
        assert got.count(b"HTTP/1.1 ") <= 1
    assert_alive(srv)


@pytest.mark.parametrize("tail", [pytest.param(t, id=i) for i, t in BAD_CHUNKS[:4] + BAD_CHUNKS[9:10]])
def test_bad_chunk_answered_400(srv, tail):
    with Conn(srv) as c:
        c.send(_bad_chunk_request(tail))
        r = c.response()
        assert r.status == 400 and r.get("connection") == "close"
        c.assert_closed()
    assert_alive(srv)


def test_chunk_extension_at_limit_accepted(srv):
    ext = b";" + b"e" * 1022                # 1023 bytes: under HTTP_MAX_CHUNK_EXT
    r = request(srv, post_chunked(b"/echo", b"5" + ext + b"\r\nhello\r\n0\r\n\r\n",
                                  b"Connection: close\r\n"))
    assert (r.status, r.body) == (200, b"hello")


def test_16_hex_digit_chunk_size_accepted(srv):
    r = request(srv, post_chunked(b"/echo", b"0000000000000005\r\nhello\r\n0\r\n\r\n",
                                  b"Connection: close\r\n"))
    assert (r.status, r.body) == (200, b"hello")


# ---------------------------------------------------------------------------
# 2. keep-alive
# ---------------------------------------------------------------------------

def test_keepalive_many_requests_one_socket(srv):
    with Conn(srv) as c:
        port = c.sock.getsockname()[1]
        for i in range(10):
            c.send(b"GET /info?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            r = c.response()
            assert r.status == 200 and r.get("connection") is None
            env = r.json()
            assert env["QUERY_STRING"] == "i=%d" % i
            assert env["REMOTE_PORT"] == str(port)
            c.send(post(b"/echo", b"x" * i))
            r = c.response()
            assert (r.status, r.body) == (200, b"x" * i)


def test_http10_closes_by_default(srv):
    with Conn(srv) as c:
        c.send(b"GET /reason HTTP/1.0\r\n\r\n")
        r = c.response()
        assert (r.status, r.body) == (299, b"ok")
        assert r.get("connection") == "close"
        c.assert_closed()


def test_http10_keepalive(srv):
    with Conn(srv) as c:
        for _ in range(3):
            c.send(b"GET /reason HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.response()
            assert (r.status, r.body) == (299, b"ok")
            assert r.get("connection") == "keep-alive"
            assert r.get("content-length") == "2"
        c.send(b"POST /echo HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nabc")
        r = c.response()
        assert (r.status, r.body, r.get("connection")) == (200, b"abc", "keep-alive")
        c.send(b"GET /reason HTTP/1.0\r\n\r\n")         # and now the default: close
        r = c.response()
        assert r.get("connection") == "close"
        c.assert_closed()


def test_http10_close_wins_over_keepalive(srv):
    with Conn(srv) as c:
        c.send(b"GET /reason HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n" + GOOD)
        r = c.response()
        assert (r.status, r.get("connection")) == (299, "close")
        c.assert_closed()


def test_http10_keepalive_streamed_body_closes(srv):
    """HTTP/1.0 has no chunked coding: a streamed body ends at the close,
    whatever the client asked for."""
    with Conn(srv) as c:
        c.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.get("connection") == "close"
        assert r.get("transfer-encoding") is None and r.get("content-length") is None
        assert r.body == b"0" * 10 + b"1" * 10 + b"2" * 10 + b"3" * 10 + b"4" * 10


@pytest.mark.parametrize("value", [b"close", b"CLOSE", b"keep-alive, close", b"foo ,  Close"])
def test_connection_close_honoured(srv, value):
    with Conn(srv) as c:
        c.send(b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: " + value + b"\r\n\r\n" + GOOD)
        r = c.response()
        assert (r.status, r.body, r.get("connection")) == (299, b"ok", "close")
        c.assert_closed()           # the pipelined GOOD is not served


def test_app_connection_close_header(srv):
    """A response that ends short of its Content-Length must close."""
    with Conn(srv) as c:
        c.send(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, headers, _ = c.read_head()
        assert status == 200 and ("content-length", "10") in headers
        assert c.rest() == b"12345"


def test_no_keepalive_option(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--no-http1-keep-alive")
    for req in (b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
                b"GET /reason HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                post(b"/echo", b"ok"),
                b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"):
        with Conn(s) as c:
            c.send(req + GOOD)
            r = c.response()
            assert r.status in (200, 299) and r.get("connection") == "close"
            assert r.body in (b"ok", b"0" * 10 + b"1" * 10 + b"2" * 10 + b"3" * 10 + b"4" * 10)
            c.assert_closed()
    # a real client copes
    r = httpx.get(s.url + "/reason")
    assert (r.status_code, r.text, r.headers["connection"]) == (299, "ok", "close")


def test_httpx_reuses_connection(srv):
    with httpx.Client(base_url=srv.url) as client:
        ports = set()
        for i in range(5):
            r = client.get("/info", params={"i": str(i)})
            assert r.status_code == 200
            ports.add(r.json()["REMOTE_PORT"])
            r = client.post("/echo", content=b"abc" * i)
            assert r.content == b"abc" * i
        assert len(ports) == 1


def test_curl_reuses_connection(srv):
    p = subprocess.run(["curl", "-sv", "--http1.1", srv.url + "/reason", srv.url + "/echo",
                        "--data-binary", "payload"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    # curl applies --data-binary to both URLs: POST /reason (299 ok) and POST /echo
    assert p.stdout == b"okpayload"
    assert b"Re-using existing connection" in p.stderr


# ---------------------------------------------------------------------------
# 3. pipelining
# ---------------------------------------------------------------------------

def _pipeline(n, big=0):
    """n requests and, for each, a check of its response."""
    reqs, checks = [], []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            reqs.append(b"GET /info?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            checks.append(("GET", lambda r, i=i: r.json()["QUERY_STRING"] == "i=%d" % i))
        elif kind == 1:
            body = (b"body-%d-" % i) * i
            if big and i == 11:
                body = os.urandom(big)
            reqs.append(post(b"/echo?i=%d" % i, body))
            checks.append(("POST", lambda r, b=body: r.body == b))
        elif kind == 2:
            parts = [b"c%d" % i, b"", b"x" * (i * 7), b"\r\n0\r\n\r\n"]
            reqs.append(post_chunked(b"/echo", chunked(*parts, trailer=b"T: %d\r\n" % i)))
            checks.append(("POST", lambda r, b=b"".join(parts): r.body == b))
        elif kind == 3:
            reqs.append(b"HEAD /bigresp?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i + 100))
            checks.append(("HEAD", lambda r, i=i: r.get("content-length") == str(i + 100)
                           and r.body == b""))
        else:
            reqs.append(b"GET /stream?n=3&size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            checks.append(("GET", lambda r, i=i: r.get("transfer-encoding") == "chunked"
                           and r.body == b"0" * i + b"1" * i + b"2" * i))
    return reqs, checks


def _read_all(c, checks):
    for k, (method, check) in enumerate(checks):
        r = c.response(method)
        assert r.status == 200, (k, r.head)
        assert check(r), (k, r.head, r.body[:200])


def test_pipeline_50_in_one_send(srv):
    reqs, checks = _pipeline(50)
    with Conn(srv) as c:
        c.send(b"".join(reqs))
        _read_all(c, checks)
        # the connection is still in step: one more request, then nothing else
        c.send(b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.response()
        assert (r.status, r.body) == (299, b"ok")
        c.assert_closed()


def test_pipeline_with_large_body(srv):
    """A 300 KB body in the middle of a pipeline; the sender runs in its own
    thread so neither side can deadlock on full socket buffers."""
    reqs, checks = _pipeline(25, big=300_000)
    data = b"".join(reqs)
    with Conn(srv) as c:
        t = threading.Thread(target=c.send, args=(data,))
        t.start()
        _read_all(c, checks)
        t.join()


def test_pipeline_ends_with_close(srv):
    reqs, checks = _pipeline(10)
    with Conn(srv) as c:
        c.send(b"".join(reqs) + b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GOOD)
        _read_all(c, checks)
        r = c.response()
        assert (r.status, r.get("connection")) == (299, "close")
        c.assert_closed()


@pytest.mark.parametrize("sizes", [(1,), (2, 3, 5, 7, 11, 13), (4096, 1, 17)], ids=["1", "primes", "mixed"])
def test_pipeline_awkward_splits(srv, sizes):
    reqs, checks = _pipeline(10)
    # a CRLF right before a chunk boundary, a chunked body ending mid-CRLF...
    data = b"".join(reqs)
    with Conn(srv) as c:
        def sender():
            i, k = 0, 0
            while i < len(data):
                n = sizes[k % len(sizes)]
                c.sock.sendall(data[i:i + n])
                i += n
                k += 1
                if k % 4 == 0:
                    time.sleep(0.001)
        t = threading.Thread(target=sender)
        t.start()
        _read_all(c, checks)
        t.join()


def test_pipeline_inline_mode(wsgi_server):
    """--blocking-threads 1 runs the app on the loop thread: another path
    through the pipelining code."""
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "1")
    reqs, checks = _pipeline(50)
    with Conn(s) as c:
        c.send(b"".join(reqs))
        _read_all(c, checks)


def test_pipeline_extra_crlf_between_requests(srv):
    """Clients may send a CRLF after a body; up to a few empty lines before
    a request line are skipped."""
    with Conn(srv) as c:
        c.send(post(b"/echo", b"abc") + b"\r\n" + post(b"/echo", b"def") + b"\r\n\r\n" + GOOD)
        assert c.response().body == b"abc"
        assert c.response().body == b"def"
        assert c.response().status == 299


def test_pipeline_split_at_every_head_boundary(srv):
    """Each request sent in two pieces cut at every interesting point:
    inside CRLF CRLF, right after it, inside the body."""
    req = post(b"/echo", b"0123456789") + GOOD
    end = req.index(b"\r\n\r\n")
    with Conn(srv) as c:
        for cut in (1, end + 1, end + 2, end + 3, end + 4, end + 9, len(req) - len(GOOD) + 1):
            c.send(req[:cut])
            time.sleep(0.02)
            c.send(req[cut:])
            r = c.response()
            assert (r.status, r.body) == (200, b"0123456789"), cut
            r = c.response()
            assert (r.status, r.body) == (299, b"ok"), cut


# ---------------------------------------------------------------------------
# 4. bodies, HEAD, Expect, default headers
# ---------------------------------------------------------------------------

def test_chunked_request_exact_bytes(srv):
    parts = [bytes(range(256)), b"\r\n0\r\n\r\n", b"x" * 70000, b"\x00", b"end"]
    body = chunked(*parts)
    r = request(srv, post_chunked(b"/echo", body, b"Connection: close\r\n"))
    assert (r.status, r.body) == (200, b"".join(parts))
    assert r.get("content-length") == str(len(b"".join(parts)))


def test_chunked_request_extensions_and_trailers(srv):
    body = (b"3;name=value;flag\r\nabc\r\n"
            b"000A ; q=\"quoted ; string\"\r\n0123456789\r\n"
            b"1;a\t=\tb\r\nZ\r\n"
            b"0;last=1\r\nX-Trailer: one\r\nX-Other:two\r\n\r\n")
    with Conn(srv) as c:
        c.send(post_chunked(b"/echo", body) + GOOD)
        r = c.response()
        assert (r.status, r.body) == (200, b"abc0123456789Z")
        r = c.response()                        # the leftover after the trailers
        assert (r.status, r.body) == (299, b"ok")


def test_chunked_request_empty(srv):
    with Conn(srv) as c:
        c.send(post_chunked(b"/echo", b"0\r\n\r\n") + GOOD)
        r = c.response()
        assert (r.status, r.body, r.get("content-length")) == (200, b"", "0")
        assert c.response().status == 299


def test_chunked_request_uppercase_hex(srv):
    r = request(srv, post_chunked(b"/echo", b"1F\r\n" + b"q" * 31 + b"\r\n0\r\n\r\n",
                                  b"Connection: close\r\n"))
    assert r.body == b"q" * 31


def test_chunked_request_httpx_and_curl(srv):
    def gen():
        for i in range(20):
            yield bytes([i]) * (i * 100 + 1)
    expected = b"".join(gen())
    r = httpx.post(srv.url + "/echo", content=gen())
    assert (r.status_code, r.content) == (200, expected)
    p = subprocess.run(["curl", "-s", "--http1.1", "-H", "Transfer-Encoding: chunked",
                        "--data-binary", "@-", srv.url + "/echo"],
                       input=expected, capture_output=True, timeout=30)
    assert p.returncode == 0 and p.stdout == expected


def test_chunked_response_http11_exact(srv):
    r = request(srv, b"GET /stream?n=3&size=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 200
    assert r.get("transfer-encoding") == "chunked" and r.get("content-length") is None
    assert r.raw_body == b"4\r\n0000\r\n4\r\n1111\r\n4\r\n2222\r\n0\r\n\r\n"


def test_chunked_response_empty_stream(srv):
    with Conn(srv) as c:
        c.send(b"GET /stream?n=0 HTTP/1.1\r\nHost: x\r\n\r\n" + GOOD)
        r = c.response()
        assert r.status == 200 and r.body == b""
        assert c.response().status == 299


def test_close_delimited_response_http10(srv):
    with Conn(srv) as c:
        c.send(b"GET /stream?n=3&size=4 HTTP/1.0\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.get("transfer-encoding") is None and r.get("content-length") is None
        assert r.get("connection") == "close"
        assert r.body == b"000011112222"


def test_chunked_response_httpx_large(srv):
    r = httpx.get(srv.url + "/stream", params={"n": "200", "size": "1000"})
    assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"".join(str(i % 10).encode() * 1000 for i in range(200))


def test_head_keeps_content_length(srv):
    with Conn(srv) as c:
        c.send(b"HEAD /bigresp?n=1234 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response("HEAD")
        assert r.status == 200 and r.get("content-length") == "1234"
        c.send(b"HEAD /reason HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response("HEAD")
        assert (r.status, r.get("content-length")) == (299, "2")
        # no body bytes leaked: the next response starts right away
        c.send(GOOD)
        assert c.buf == b""
        r = c.response()
        assert (r.status, r.body) == (299, b"ok")


def test_head_streamed_body(srv):
    with Conn(srv) as c:
        c.send(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n" + GOOD)
        r = c.response("HEAD")
        assert r.status == 200
        assert r.get("transfer-encoding") is None
        r = c.response()
        assert (r.status, r.body) == (299, b"ok")


def test_head_httpx_and_curl(srv):
    r = httpx.head(srv.url + "/bigresp?n=777")
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "777", b"")
    p = subprocess.run(["curl", "-sI", srv.url + "/bigresp?n=777"], capture_output=True, timeout=30)
    assert p.returncode == 0 and b"content-length: 777\r\n" in p.stdout


def test_expect_100_continue(srv):
    with Conn(srv) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.response()
        assert (r.status, r.reason, r.head) == (100, "Continue", b"HTTP/1.1 100 Continue")
        assert c.buf == b""
        c.send(b"hello world")
        r = c.response()
        assert (r.status, r.body) == (200, b"hello world")
        # the connection is reusable, and a second Expect works the same way
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"expect: 100-Continue\r\n\r\n")
        assert c.response().status == 100
        c.send(b"3\r\nabc\r\n0\r\n\r\n")
        r = c.response()
        assert (r.status, r.body) == (200, b"abc")


def test_expect_100_body_sent_eagerly(srv):
    """A client that does not wait for 100 still gets its answer (a 100
    first is allowed)."""
    with Conn(srv) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
               b"Expect: 100-continue\r\n\r\nabc" + GOOD)
        r = c.response()
        if r.status == 100:
            r = c.response()
        assert (r.status, r.body) == (200, b"abc")
        assert c.response().status == 299


def test_expect_100_not_sent_to_http10(srv):
    with Conn(srv) as c:
        c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
        r = c.response()
        assert (r.status, r.body) == (200, b"abc")


def test_expect_100_noread(srv):
    """An app that never reads the body: no 100, and the final answer comes."""
    with Conn(srv) as c:
        c.send(b"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.response()
        assert (r.status, r.body) == (200, b"noread")
        # since the body never came, the server cannot reuse the connection
        c.sock.settimeout(5)
        assert c.rest() == b""


def test_expect_100_noread_announces_close(srv):
    with Conn(srv) as c:
        c.send(b"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert r.get("connection") == "close"


def test_unread_large_body_announces_close(srv):
    with Conn(srv) as c:
        t = threading.Thread(target=c.send, args=(post(b"/noread", b"x" * 2_000_000) + GOOD,))
        t.start()
        try:
            r = c.response()
            assert (r.status, r.body) == (200, b"noread")
            assert r.get("connection") == "close"
        finally:
            c.rest()
            t.join()


def test_expect_100_over_max_body(small):
    with Conn(small) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.response()
        assert r.status == 413          # refused up front, no 100 first
        c.assert_closed()


def test_curl_expect_100(srv):
    data = os.urandom(5000)
    p = subprocess.run(["curl", "-sv", "--http1.1", "-H", "Expect: 100-continue",
                        "--expect100-timeout", "20", "--data-binary", "@-", srv.url + "/echo"],
                       input=data, capture_output=True, timeout=30)
    assert p.returncode == 0 and p.stdout == data
    assert b"< HTTP/1.1 100 Continue" in p.stderr


def test_default_headers(srv):
    r = request(srv, b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.all("server") == ["granc"]
    dates = r.all("date")
    assert len(dates) == 1
    assert dates[0].endswith(" GMT")
    when = email.utils.parsedate_to_datetime(dates[0]).timestamp()
    assert abs(when - time.time()) < 5
    assert email.utils.format_datetime(
        email.utils.parsedate_to_datetime(dates[0]), usegmt=True) == dates[0]


def test_default_headers_on_errors(srv):
    r = request(srv, b"garbage\r\n\r\n")
    assert r.all("server") == ["granc"] and len(r.all("date")) == 1


def test_app_server_header_wins(srv):
    r = request(srv, b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 200
    assert r.all("server") == ["custom"]
    assert r.all("set-cookie") == ["a=1", "b=2"]
    assert len(r.all("date")) == 1


# ---------------------------------------------------------------------------
# 5. timeouts
# ---------------------------------------------------------------------------

def test_header_read_timeout(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--http1-header-read-timeout", "1000")
    with Conn(s) as stalled, Conn(s) as idle, Conn(s) as silent, Conn(s) as trickle:
        t0 = time.monotonic()
        stalled.send(b"GET /info HTTP/1.1\r\nHost: x\r\n")      # half a head
        idle.send(GOOD)
        assert idle.response().status == 299                     # now idle, kept alive
        trickle.send(b"G")
        # meanwhile a normal request is served at once
        t1 = time.monotonic()
        with Conn(s) as c:
            c.send(GOOD)
            assert c.response().status == 299
        assert time.monotonic() - t1 < 0.5 * SLOW
        # the trickler keeps sending a byte every 200 ms: the limit is for
        # the whole head, not between bytes
        for ch in b"ET /info HTTP/1.1\r\nHost: x\r\nX-A: 1234567890\r\n":
            try:
                trickle.send(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if b"HTTP/1.1" in _peek(trickle.sock):
                break
            time.sleep(0.2)
        r = stalled.response()
        assert r.status == 408 and r.get("connection") == "close"
        stalled.assert_closed()
        assert 0.9 <= time.monotonic() - t0 < 4 * SLOW
        # an idle keep-alive connection is closed silently
        assert idle.rest() == b""
        assert silent.rest() == b""
        assert time.monotonic() - t0 < 4 * SLOW
        r = trickle.response()
        assert r.status == 408
        assert time.monotonic() - t0 < 4 * SLOW
    assert_alive(s)


def _peek(sock):
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK)
    except (BlockingIOError, ConnectionResetError):
        return b""
    finally:
        sock.setblocking(True)
        sock.settimeout(10)


def test_stalled_body_does_not_block_inline_worker(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "1")
    stalled = Conn(s)
    try:
        stalled.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.2)
        with Conn(s, timeout=1.5 * SLOW) as c:
            c.send(GOOD)
            assert c.response().status == 299
    finally:
        stalled.close()


def test_stalled_body_does_not_block_pool(srv):
    stalled = Conn(srv)
    try:
        stalled.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.2)
        t = time.monotonic()
        assert_alive(srv)
        assert time.monotonic() - t < 0.5 * SLOW
        stalled.send(b"d" * 97)
        r = stalled.response()
        assert (r.status, r.body) == (200, b"abc" + b"d" * 97)
    finally:
        stalled.close()


@pytest.mark.slow
def test_stalled_body_times_out(wsgi_server, tmp_path):
    """A body that stops: after 60 s without a byte (IO_TIMEOUT_MS, per
    read) the request ends and the connection closes, under ASGI (the app
    gets http.disconnect) as under WSGI (the app's read fails).  A body
    that trickles a byte every 25 s is not cut."""
    report = tmp_path / "report"
    env = {"STALL_REPORT": str(report)}
    servers = [wsgi_server("stall_app:app", interface="asgi", env=env),
               wsgi_server("stall_app:wsgi", interface="wsgi", env=env)]
    stalled, trickling = [], []
    for srv in servers:
        # 70,000 bytes: past the loop's 64 KiB read-ahead, so the app reads
        c = Conn(srv, timeout=90)
        c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
               + b"a" * 70000)
        stalled.append(c)
        c = Conn(srv, timeout=90)
        c.send(b"POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 70100\r\n\r\n"
               + b"t" * 70010)
        trickling.append(c)
    t0 = time.monotonic()
    try:
        for k in (1, 2):
            time.sleep(t0 + 25 * k - time.monotonic())
            for c in trickling:
                c.send(b"t")
        # 50 s in: nothing has timed out yet, the stalled body included
        lines = report.read_text().splitlines() if report.exists() else []
        assert lines == []
        for c in stalled:
            # the server closes it (a reset is a close too)
            with pytest.raises((EOFError, ConnectionResetError)):
                c.response()
        assert time.monotonic() - t0 < 80
        time.sleep(max(0, t0 + 75 - time.monotonic()))
        for c in trickling:
            c.send(b"t" * 88)
            r = c.response()
            assert (r.status, r.body) == (200, b"70100")
    finally:
        for c in stalled + trickling:
            c.close()
    got = sorted(json.loads(l) for l in report.read_text().splitlines())
    assert got[:2] == [["/stall", "OSError"], ["/stall", "http.disconnect"]], got
    assert got[2:] == [["/trickle", 70100], ["/trickle", 70100]], got


def test_header_timeout_spares_busy_and_fresh(wsgi_server):
    """A request taking longer than the head timeout is not cut, and the
    timeout clock restarts for the next request on the connection."""
    s = wsgi_server("wsgi_app:app", "--http1-header-read-timeout", "1000")
    with Conn(s) as c:
        c.send(b"GET /slow?t=1.6 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response()
        assert (r.status, r.body) == (200, b"slow done")
        time.sleep(0.3)
        c.send(GOOD)
        assert c.response().status == 299


# ---------------------------------------------------------------------------
# 6. --http1-max-body-size
# ---------------------------------------------------------------------------

def test_max_body_content_length(small):
    with Conn(small) as c:
        c.send(post(b"/echo", b"a" * 2000) + GOOD)
        r = c.response()
        assert (r.status, r.reason) == (413, "Content Too Large")
        assert r.get("connection") == "close"
        c.assert_closed()
    assert_alive(small)


def test_max_body_content_length_not_sent(small):
    """The 413 comes from the head alone: no need to send the body."""
    with Conn(small, timeout=5) as c:
        c.send(b"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        assert c.response().status == 413
        c.assert_closed()


def test_max_body_chunked(small):
    with Conn(small) as c:
        c.send(post_chunked(b"/echo", chunked(b"b" * 600, b"c" * 600)) + GOOD)
        r = c.response()
        assert r.status == 413 and r.get("connection") == "close"
        c.assert_closed()
    assert_alive(small)


def test_max_body_at_limit(small):
    with Conn(small) as c:
        for body in (b"z" * 500, b"y" * 1000):
            c.send(post(b"/echo", body))
            r = c.response()
            assert (r.status, r.body) == (200, body)
        c.send(post_chunked(b"/echo", chunked(b"w" * 400, b"v" * 600)))
        r = c.response()
        assert (r.status, r.body) == (200, b"w" * 400 + b"v" * 600)


# ---------------------------------------------------------------------------
# 7. unread bodies
# ---------------------------------------------------------------------------

def test_unread_body_keeps_connection(srv):
    with Conn(srv) as c:
        port = c.sock.getsockname()[1]
        c.send(post(b"/noread", os.urandom(10240)))
        r = c.response()
        assert (r.status, r.body) == (200, b"noread")
        assert r.get("connection") is None
        c.send(post_chunked(b"/noread", chunked(b"q" * 5000, b"r" * 5000)))
        r = c.response()
        assert (r.status, r.body, r.get("connection")) == (200, b"noread", None)
        c.send(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response()
        assert r.status == 200 and r.json()["REMOTE_PORT"] == str(port)


def test_unread_body_pipelined(srv):
    with Conn(srv) as c:
        c.send(post(b"/noread", b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n") + GOOD)
        r = c.response()
        assert (r.status, r.body) == (200, b"noread")
        r = c.response()
        assert (r.status, r.body) == (299, b"ok")     # never /evil from the body


# ---------------------------------------------------------------------------
# 8. client disconnect mid-upload
# ---------------------------------------------------------------------------

def test_disconnect_mid_upload(srv):
    for path in (b"/digest", b"/echo", b"/noread"):
        c = Conn(srv)
        c.send(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
        c.send(b"u" * (1 << 20))
        # the server keeps serving others while that upload is stuck
        assert_alive(srv)
        c.close()
        assert_alive(srv)
    # a chunked upload cut mid-chunk
    c = Conn(srv)
    c.send(post_chunked(b"/digest", b"100000\r\n" + b"v" * 50000))
    c.close()
    assert_alive(srv)
    with httpx.Client(base_url=srv.url) as client:
        r = client.post("/digest", content=b"w" * 3_000_000)
        assert r.json()["length"] == 3_000_000


def test_disconnect_after_head(srv):
    for data in (b"GET /slow?t=0.2 HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /bigresp?n=20000000 HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /info HTTP/1.1\r\nHost: x\r\n"):
        c = Conn(srv)
        c.send(data)
        c.close()
    time.sleep(0.3)
    assert_alive(srv)


# ---------------------------------------------------------------------------
# response framing the app influences (apps/http_app.py)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_srv():
    with Server("http_app:app") as s:
        yield s


def _status(c, query, method=b"GET", version=b"1.1"):
    c.send(method + b" /status?" + query + b" HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    return c.response(method.decode())


def test_bodyless_statuses(app_srv):
    with Conn(app_srv) as c:
        for q in (b"code=204&body=abc", b"code=204&body=abc&stream=1",
                  b"code=304&body=abc", b"code=304&body=abc&stream=1"):
            r = _status(c, q)
            assert r.status in (204, 304) and r.body == b""
            assert r.get("transfer-encoding") is None
            c.send(GOOD.replace(b"/reason", b"/status?body=next"))
            r = c.response()
            assert (r.status, r.body) == (200, b"next")    # nothing leaked before it


def test_app_transfer_encoding_is_the_servers_business(app_srv):
    with Conn(app_srv) as c:
        r = _status(c, b"hdr=Transfer-Encoding:chunked&body=hi")
        assert (r.all("transfer-encoding"), r.get("content-length"), r.body) == ([], "2", b"hi")
        r = _status(c, b"hdr=Transfer-Encoding:gzip&body=hi&stream=1")
        assert (r.all("transfer-encoding"), r.body) == (["chunked"], b"hi")


def test_app_content_length_with_stream(app_srv):
    with Conn(app_srv) as c:
        r = _status(c, b"cl=5&body=hello&stream=1")
        assert (r.get("content-length"), r.get("transfer-encoding"), r.body) == ("5", None, b"hello")
        r = _status(c, b"cl=5&body=hello&stream=1", method=b"HEAD")
        assert (r.get("content-length"), r.body) == ("5", b"")
        c.send(GOOD.replace(b"/reason", b"/status?body=next"))
        assert c.response().body == b"next"


def test_app_connection_close(app_srv):
    with Conn(app_srv) as c:
        r = _status(c, b"hdr=connection:close&body=hi")
        assert (r.body, r.all("connection")) == (b"hi", ["close"])
        c.assert_closed()


def test_no_content_length_on_204(app_srv):
    with Conn(app_srv) as c:
        r = _status(c, b"code=204&cl=3&body=abc")
        assert r.status == 204 and r.get("content-length") is None
