"""HTTP/1.1 request conformance corpus, run against the granc binary.

The corpus is data: tests/conformance/requests.txt (its format is described
at its top), plus the systematic cases generated below (every non-tchar in
a method and a field name, every control byte in a field value and a
target, the size limits).  Each case says accept, reject NNN or
incomplete, derived from RFC 9110 / RFC 9112 and, where the RFC lets the
recipient choose, from the policy at the top of http.c.

accept      the echo app (apps/conformance_app.py) answers 200 with a JSON
            picture of the request, which must equal what the small
            reference parser below reads in the raw bytes; then a second
            request on the same connection gets its own 200 (or, when the
            request asked for close or is plain HTTP/1.0, the server closes).
reject NNN  exactly that status, a "connection: close" header, then EOF.
incomplete  no answer within 1 s and the connection still open.

Every case runs against a WSGI server; a subset runs against an ASGI one.
Cases where granc disagrees with the expectation are xfail(strict=True)
with the reason: they are bug reports, not adjusted expectations.
"""
import json
import os
import re
import socket
import urllib.parse

import pytest

from conftest import ASAN, HERE, Server, read_response

CORPUS = os.path.join(HERE, "conformance", "requests.txt")
TIMEOUT = 6 if ASAN else 3          # for an answer that should come
QUIET = 1.0                         # "incomplete": silence for this long
NEXT = b"GET /__next?k=1 HTTP/1.1\r\nHost: next\r\n\r\n"
BUFFER_SIZE = 417792                # --http1-buffer-size default


# ---------------------------------------------------------------------------
# the corpus file
# ---------------------------------------------------------------------------

class Case:
    def __init__(self, name, expect, rfc, raw, source):
        self.name, self.expect, self.rfc, self.raw = name, expect, rfc, raw
        self.source = source            # "file" or "gen"

    @property
    def group(self):
        return self.name.split("-", 1)[0]

    @property
    def status(self):
        return int(self.expect.split()[1]) if self.expect.startswith("reject") else None


_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|[rnt\\])")


def unescape(text, where):
    """A raw line of the corpus to bytes: \\r \\n \\t \\\\ \\xNN, nothing else."""
    out, pos = bytearray(), 0
    for m in _ESC.finditer(text):
        lit = text[pos:m.start()]
        if "\\" in lit:
            raise ValueError(f"{where}: unknown escape in {text!r}")
        out += lit.encode("ascii")
        e = m.group(1)
        out += bytes([int(e[1:], 16)]) if e[0] == "x" else \
            {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[e]
        pos = m.end()
    if "\\" in text[pos:]:
        raise ValueError(f"{where}: unknown escape in {text!r}")
    out += text[pos:].encode("ascii")
    return bytes(out)


def load_corpus(path=CORPUS):
    with open(path, "rb") as f:
        data = f.read()
    data.decode("ascii")                # the file is ASCII: escape the rest
    cases, block = [], []

    def flush():
        if not block:
            return
        meta, raw = {}, b""
        for lineno, line in block:
            where = f"{os.path.basename(path)}:{lineno}"
            if line.startswith("## "):
                if raw:
                    raise ValueError(f"{where}: ## line after the raw request")
                key, sep, val = line[3:].partition(":")
                if not sep or key.strip() in meta:
                    raise ValueError(f"{where}: bad or repeated key {line!r}")
                meta[key.strip()] = val.strip()
            else:
                if line != line.rstrip():
                    raise ValueError(f"{where}: trailing whitespace (write \\x20)")
                raw += unescape(line, where)
        where = f"{os.path.basename(path)}:{block[0][0]}"
        if set(meta) - {"name", "expect", "rfc", "note"} or \
                not {"name", "expect", "rfc"} <= set(meta) or not raw:
            raise ValueError(f"{where}: a case needs name, expect, rfc and a request")
        if not re.fullmatch(r"accept|incomplete|reject [45]\d\d", meta["expect"]):
            raise ValueError(f"{where}: bad expect {meta['expect']!r}")
        cases.append(Case(meta["name"], meta["expect"], meta["rfc"], raw, "file"))
        block.clear()

    for lineno, line in enumerate(data.decode("ascii").split("\n"), 1):
        if line.strip() == "":
            flush()
        elif line.startswith("#") and not line.startswith("## ") and not block:
            continue                    # a comment between blocks
        else:
            block.append((lineno, line))
    flush()
    return cases


# ---------------------------------------------------------------------------
# generated cases
# ---------------------------------------------------------------------------

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789"
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
DELIMS = b'"(),/:;<=>?@[\\]{}'
CTLS = [c for c in range(0x20)] + [0x7f]
NON_TCHAR = CTLS + list(DELIMS) + [0x80, 0xa0, 0xff]   # SP is a separator: hand-written
assert not TCHAR & set(NON_TCHAR)


def generated():
    out = []

    def add(name, expect, rfc, raw):
        out.append(Case(name, expect, rfc, raw, "gen"))

    for c in NON_TCHAR:
        add(f"method-gen-{c:#04x}", "reject 400", "9110 9.1, 5.6.2 (method = token)",
            b"G" + bytes([c]) + b"ET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in NON_TCHAR:
        if c == ord(":"):               # "Fo:o: bar" is a valid field "Fo"
            continue
        add(f"field-name-gen-{c:#04x}", "reject 400", "9110 5.1 (field-name = token)",
            b"GET / HTTP/1.1\r\nHost: x\r\nFo" + bytes([c]) + b"o: bar\r\n\r\n")
    for c in CTLS:
        if c == 0x09:                   # HTAB is allowed in a value
            continue
        add(f"field-value-gen-{c:#04x}", "reject 400",
            "9110 5.5 (CTL, CR, LF, NUL are not field-vchar); policy: control bytes are 400",
            b"GET / HTTP/1.1\r\nHost: x\r\nFoo: a" + bytes([c]) + b"b\r\n\r\n")
    for c in (0x80, 0x9f, 0xa0, 0xc0, 0xfe, 0xff):
        add(f"field-value-gen-{c:#04x}", "accept", "9110 5.5 (obs-text)",
            b"GET / HTTP/1.1\r\nHost: x\r\nFoo: a" + bytes([c]) + b"b\r\n\r\n")
    for c in CTLS + [0x80, 0xa0, 0xff]:
        add(f"target-gen-{c:#04x}", "reject 400",
            "9112 3.2; policy: the target is visible ASCII only",
            b"GET /a" + bytes([c]) + b"b HTTP/1.1\r\nHost: x\r\n\r\n")

    # limits: HTTP_MAX_TARGET 8192, HTTP_MAX_HEADERS 100, the head buffer
    def get(target, fields=b""):
        return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    add("limits-target-8192", "accept", "9112 3 (SHOULD take 8000 octets); policy: 8192",
        get(b"/" + b"a" * 8191))
    add("limits-target-8193", "reject 414", "9110 15.5.15; policy: over 8192 bytes is 414",
        get(b"/" + b"a" * 8192))
    add("limits-target-8193-query", "reject 414", "9110 15.5.15; policy",
        get(b"/?" + b"q" * 8191))
    add("limits-target-8193-absolute", "reject 414", "9110 15.5.15; policy",
        get(b"http://x/" + b"a" * 8184))
    add("limits-target-64k", "reject 414", "9110 15.5.15; policy",
        get(b"/" + b"a" * 65536))
    add("limits-fields-100", "accept", "RFC 6585 5; policy: 100 fields",
        get(b"/", b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(99))))
    add("limits-fields-101", "reject 431", "RFC 6585 5; policy: more than 100 is 431",
        get(b"/", b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(100))))
    add("limits-fields-300", "reject 431", "RFC 6585 5; policy",
        get(b"/", b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(299))))
    add("limits-fields-100-empty", "accept", "RFC 6585 5; policy: 100 fields",
        get(b"/", b"A:\r\n" * 99))
    add("limits-value-8k", "accept", "9110 5.4 (no limit of its own)",
        get(b"/", b"X-Big: " + b"v" * 8192 + b"\r\n"))
    base = len(get(b"/", b"X-Big: \r\n"))
    add("limits-head-under-buffer", "accept",
        "RFC 6585 5; policy: --http1-buffer-size 417792 is the largest head",
        get(b"/", b"X-Big: " + b"v" * (BUFFER_SIZE - 64 - base) + b"\r\n"))
    add("limits-head-over-buffer", "reject 431", "RFC 6585 5; policy: a larger head is 431",
        get(b"/", b"X-Big: " + b"v" * (BUFFER_SIZE + 64 - base) + b"\r\n"))
    add("limits-head-over-buffer-many-fields", "reject 431", "RFC 6585 5; policy",
        get(b"/", b"".join(b"X-%d: " % i + b"v" * 5000 + b"\r\n" for i in range(90))))
    return out


CASES = load_corpus() + generated()
BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "duplicate case names"


# ---------------------------------------------------------------------------
# the reference parser: what an accepted request means
# ---------------------------------------------------------------------------
# Only ever run on requests the corpus says are valid, so it parses the
# plain RFC 9112 grammar without defending against anything; it asserts
# that the request is consumed exactly, which catches corpus typos.

def _dechunk(data):
    """RFC 9112 7.1.3's decoding algorithm; returns (body, bytes used)."""
    body, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(re.match(rb"[0-9a-fA-F]+", data[pos:eol]).group(), 16)
        pos = eol + 2
        if size == 0:
            break
        body += data[pos:pos + size]
        assert data[pos + size:pos + size + 2] == b"\r\n"
        pos += size + 2
    while True:                          # trailer section, then the empty line
        eol = data.index(b"\r\n", pos)
        line, pos = data[pos:eol], eol + 2
        if line == b"":
            return body, pos


class Request:
    """method, path, query, minor, fields [(name, value)], body, keep_alive."""

    def __init__(self, raw):
        i = 0
        while raw.startswith(b"\r\n", i):       # RFC 9112 2.2
            i += 2
        end = raw.index(b"\r\n\r\n", i)
        lines = raw[i:end].split(b"\r\n")
        rest = raw[end + 4:]
        self.method, target, version = lines[0].split(b" ")
        m = re.fullmatch(rb"HTTP/1\.(\d)", version)
        self.minor = 0 if m.group(1) == b"0" else 1     # 1.x, x > 1: as 1.1
        fields = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon and re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name)
            fields.append((name, value.strip(b" \t")))  # RFC 9112 5: OWS
        # request-target (RFC 9112 3.2)
        authority = None
        if target == b"*":
            path, query = b"*", b""
        else:
            m = re.fullmatch(rb"(?i:https?)://([^/?]+)(.*)", target)
            if m:
                authority, target = m.group(1), m.group(2)
            path, _, query = target.partition(b"?")
            path = path or b"/"                         # RFC 9112 3.3
        self.path, self.query = path, query
        if authority is not None:
            # RFC 9112 3.2.2: the Host field is replaced by the authority
            fields = [(n, authority if n.lower() == b"host" else v) for n, v in fields]
        # framing (RFC 9112 6.3)
        lower = [n.lower() for n, _ in fields]
        if b"transfer-encoding" in lower:
            self.body, used = _dechunk(rest)
        else:
            cls = [v for n, v in fields if n.lower() == b"content-length"]
            values = {int(x) for v in cls for x in v.split(b",") if x.strip()}
            assert len(values) <= 1
            n = values.pop() if values else 0
            if len(cls) > 1 or any(b"," in v for v in cls):
                # RFC 9110 8.6: accepted repeats become one decimal value
                first = lower.index(b"content-length")
                fields = [(nm, str(n).encode()) if k == first else (nm, v)
                          for k, (nm, v) in enumerate(fields)
                          if k == first or nm.lower() != b"content-length"]
            self.body, used = rest[:n], n
        assert used == len(rest), "corpus typo: bytes after the request"
        self.fields = fields
        options = {o.strip().lower() for n, v in fields if n.lower() == b"connection"
                   for o in v.split(b",")}
        if self.minor == 1:
            self.keep_alive = b"close" not in options
        else:           # RFC 9112 9.3: 1.0 persists only on keep-alive (if at all)
            self.keep_alive = None if b"keep-alive" in options and b"close" not in options \
                else False

    def wsgi(self):
        """The picture conformance_app:wsgi must draw (PEP 3333)."""
        env = {}
        for name, value in self.fields:
            if b"_" in name:            # wsgi.c drops these (X_Foo poses as X-Foo)
                continue
            low = name.lower()
            key = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}.get(
                low, "HTTP_" + name.decode("latin-1").upper().replace("-", "_"))
            value = value.decode("latin-1")
            if key in env:              # RFC 9110 5.3 (cookies: RFC 9113 8.2.3)
                env[key] += ("; " if low == b"cookie" else ",") + value
            else:
                env[key] = value
        return {
            "method": self.method.decode("latin-1"),
            "path": urllib.parse.unquote_to_bytes(self.path).decode("latin-1"),
            "query": self.query.decode("latin-1"),
            "protocol": "HTTP/1.%d" % self.minor,
            "headers": sorted([k, v] for k, v in env.items()),
            "body": self.body.decode("latin-1"),
        }

    def asgi(self):
        """The picture conformance_app:asgi must draw (ASGI HTTP scope)."""
        return {
            "method": self.method.decode("latin-1"),
            "path": urllib.parse.unquote_to_bytes(self.path).decode("utf-8", "replace"),
            "raw_path": self.path.decode("latin-1"),
            "query_string": self.query.decode("latin-1"),
            # Granian says "1" for HTTP/1.0 (the ASGI spec: "1.0"); granc
            # follows Granian, so this is the interface, not the protocol
            "http_version": "1.1" if self.minor else "1",
            "headers": [[n.lower().decode("latin-1"), v.decode("latin-1")]
                        for n, v in self.fields],
            "body": self.body.decode("latin-1"),
        }


# ---------------------------------------------------------------------------
# talking to the server
# ---------------------------------------------------------------------------

def final_response(sock, head_req=False):
    """The next final response; interim 1xx (a 100 Continue) are skipped."""
    buf = b""
    while True:
        status, headers, body, buf = read_response(sock, buf, head_req=head_req)
        if status >= 200:
            return status, headers, body, buf


def assert_eof(sock, buf):
    assert buf == b"", f"bytes after the response: {buf[:200]!r}"
    assert sock.recv(65536) == b"", "the server did not close"


def run_case(server, case, interface):
    sock = server.connect(TIMEOUT)
    try:
        try:
            sock.sendall(case.raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                        # an early refusal: its answer is still there
        if case.expect == "incomplete":
            sock.settimeout(QUIET)
            try:
                got = sock.recv(65536)
            except socket.timeout:
                return
            pytest.fail(f"expected silence, got {got[:300]!r}" if got
                        else "expected silence, the server closed")

        if case.expect.startswith("reject"):
            status, headers, body, buf = final_response(sock)
            assert status == case.status, f"got {status}, want {case.status}"
            assert headers.get("connection", "").lower() == "close"
            assert_eof(sock, buf)
            return

        req = Request(case.raw)
        want = req.wsgi() if interface == "wsgi" else req.asgi()
        head = req.method == b"HEAD"
        status, headers, body, buf = final_response(sock, head_req=head)
        assert status == 200, f"got {status}: {body[:300]!r}"
        if head:
            assert body == b"" and \
                int(headers["content-length"]) == len(json.dumps(want, sort_keys=True))
        else:
            assert json.loads(body) == want
        if req.keep_alive is False:
            assert_eof(sock, buf)
        elif req.keep_alive:
            assert buf == b""
            sock.sendall(NEXT)
            status, headers, body, buf = final_response(sock)
            assert status == 200 and json.loads(body)["path"] == "/__next"
    finally:
        sock.close()


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

# Where granc disagrees with the expectation: name -> reason.  Reported to
# the lead as bugs; never "fixed" by changing the expectation.
_HOST = ("RFC 9112 3.2: MUST 400 a Host field with an invalid value "
         "(Host = uri-host [ \":\" port ]); granc checks only the count and serves it")
_TRAILER = ("RFC 9112 7.1.2 / 5.1: a trailer line must be a field-line (token \":\" ...); "
            "granc checks only its bytes and line end, and serves the request")
_LF_HANG = ("http.c policy (RFC 9112 2.2): a bare LF anywhere in the head is 400; "
            "when no CRLFCRLF follows, granc waits for more instead (no answer)")
_CL_REPEAT = ("RFC 9110 8.6: a recipient that accepts repeated equal Content-Length "
              "values must pass ONE value; granc passes CONTENT_LENGTH \"5,5\" / \"5, 5\"")
XFAIL = {}              # disagreements with the RFC: none left
XFAIL_ASGI = {}         # disagreements seen only through the ASGI interface

_FILE = [c for c in CASES if c.source == "file"]
ASGI_CASES = _FILE[::6] + [BY_NAME[n] for n in (
    "limits-target-8193", "limits-fields-101", "field-value-gen-0x00", "method-gen-0x40")]


def _params(cases, xfail):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=xfail[c.name])]
                         if c.name in xfail else []) for c in cases]


@pytest.fixture(scope="module")
def wsgi_srv():
    s = Server("conformance_app:wsgi", interface="wsgi")
    s.start()
    yield s
    s.stop()
    try:
        os.unlink(s.log_path)
    except OSError:
        pass


@pytest.fixture(scope="module")
def asgi_srv():
    s = Server("conformance_app:asgi", interface="asgi")
    s.start()
    yield s
    s.stop()
    try:
        os.unlink(s.log_path)
    except OSError:
        pass


@pytest.mark.parametrize("case", _params(CASES, XFAIL))
def test_wsgi(wsgi_srv, case):
    run_case(wsgi_srv, case, "wsgi")


@pytest.mark.parametrize("case", _params(ASGI_CASES, {**XFAIL, **XFAIL_ASGI}))
def test_asgi(asgi_srv, case):
    run_case(asgi_srv, case, "asgi")


def test_corpus_size():
    """The issue asks for at least 300 cases, at least 150 hand-written."""
    assert len(CASES) >= 300 and len(_FILE) >= 150
    assert {"accept", "incomplete"} <= {c.expect for c in CASES}
