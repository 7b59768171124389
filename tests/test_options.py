"""Every option of granc, driven by its own --help.

The option list comes from `granc --help` (flag, variable, type, default,
support status) and is checked against Granian 2.8.1's list, hard-coded below.
Every other test is parametrized over the parsed list, so a new option shows
up as new test cases -- and fails until SPEC below says how to test it.

Parse-only probes run granc without APP: a value that parses leaves only the
"missing APP argument" error, one that does not is reported first.
"""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import httpx
import pytest

from conftest import APPS, BIN, ROOT, Server

GRANIAN_VERSION = "2.8.1"
MAN = os.path.join(ROOT, "granc.1")

# ---------------------------------------------------------------------------
# What Granian 2.8.1 has (granian-reference.md section 2), plus granc's
# extensions.  (flag, variable, default); None: no default, or a computed one
# that --help describes in parentheses.
# ---------------------------------------------------------------------------
EXPECTED = [
    ("host", "GRANIAN_HOST", "127.0.0.1"),
    ("port", "GRANIAN_PORT", "8000"),
    ("uds", "GRANIAN_UDS", None),
    ("uds-permissions", "GRANIAN_UDS_PERMISSIONS", None),
    ("interface", "GRANIAN_INTERFACE", "rsgi"),
    ("http", "GRANIAN_HTTP", "auto"),
    ("ws", "GRANIAN_WEBSOCKETS", "on"),
    ("workers", "GRANIAN_WORKERS", "1"),
    ("blocking-threads", "GRANIAN_BLOCKING_THREADS", None),
    ("blocking-threads-idle-timeout", "GRANIAN_BLOCKING_THREADS_IDLE_TIMEOUT", "30"),
    ("runtime-threads", "GRANIAN_RUNTIME_THREADS", "1"),
    ("runtime-blocking-threads", "GRANIAN_RUNTIME_BLOCKING_THREADS", "512"),
    ("runtime-mode", "GRANIAN_RUNTIME_MODE", "auto"),
    ("loop", "GRANIAN_LOOP", "auto"),
    ("task-impl", "GRANIAN_TASK_IMPL", "asyncio"),
    ("backlog", "GRANIAN_BACKLOG", "1024"),
    ("backpressure", "GRANIAN_BACKPRESSURE", None),
    ("http1-buffer-size", "GRANIAN_HTTP1_BUFFER_SIZE", "417792"),
    ("http1-header-read-timeout", "GRANIAN_HTTP1_HEADER_READ_TIMEOUT", "30000"),
    ("http1-keep-alive", "GRANIAN_HTTP1_KEEP_ALIVE", "on"),
    ("http1-pipeline-flush", "GRANIAN_HTTP1_PIPELINE_FLUSH", "off"),
    ("http2-adaptive-window", "GRANIAN_HTTP2_ADAPTIVE_WINDOW", "off"),
    ("http2-initial-connection-window-size", "GRANIAN_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE",
     "1048576"),
    ("http2-initial-stream-window-size", "GRANIAN_HTTP2_INITIAL_STREAM_WINDOW_SIZE", "1048576"),
    ("http2-keep-alive-interval", "GRANIAN_HTTP2_KEEP_ALIVE_INTERVAL", None),
    ("http2-keep-alive-timeout", "GRANIAN_HTTP2_KEEP_ALIVE_TIMEOUT", "20"),
    ("http2-max-concurrent-streams", "GRANIAN_HTTP2_MAX_CONCURRENT_STREAMS", "200"),
    ("http2-max-frame-size", "GRANIAN_HTTP2_MAX_FRAME_SIZE", "16384"),
    ("http2-max-headers-size", "GRANIAN_HTTP2_MAX_HEADERS_SIZE", "16777216"),
    ("http2-max-send-buffer-size", "GRANIAN_HTTP2_MAX_SEND_BUFFER_SIZE", "409600"),
    ("log", "GRANIAN_LOG_ENABLED", "on"),
    ("log-level", "GRANIAN_LOG_LEVEL", "info"),
    ("log-config", "GRANIAN_LOG_CONFIG", None),
    ("access-log", "GRANIAN_LOG_ACCESS_ENABLED", "off"),
    ("access-log-fmt", "GRANIAN_LOG_ACCESS_FMT",
     '[%(time)s] %(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f'),
    ("ssl-certificate", "GRANIAN_SSL_CERTIFICATE", None),
    ("ssl-keyfile", "GRANIAN_SSL_KEYFILE", None),
    ("ssl-keyfile-password", "GRANIAN_SSL_KEYFILE_PASSWORD", None),
    ("ssl-protocol-min", "GRANIAN_SSL_PROTOCOL_MIN", "tls1.2"),  # granc: BearSSL has no TLS 1.3
    ("ssl-ca", "GRANIAN_SSL_CA", None),
    ("ssl-crl", "GRANIAN_SSL_CRL", None),
    ("ssl-client-verify", "GRANIAN_SSL_CLIENT_VERIFY", "off"),
    ("url-path-prefix", "GRANIAN_URL_PATH_PREFIX", None),
    ("respawn-failed-workers", "GRANIAN_RESPAWN_FAILED_WORKERS", "off"),
    ("respawn-interval", "GRANIAN_RESPAWN_INTERVAL", "3.5"),
    ("rss-sample-interval", "GRANIAN_RSS_SAMPLE_INTERVAL", "30"),
    ("rss-samples", "GRANIAN_RSS_SAMPLES", "1"),
    ("workers-lifetime", "GRANIAN_WORKERS_LIFETIME", None),
    ("workers-max-rss", "GRANIAN_WORKERS_MAX_RSS", None),
    ("workers-kill-timeout", "GRANIAN_WORKERS_KILL_TIMEOUT", None),
    ("factory", "GRANIAN_FACTORY", "off"),
    ("working-dir", "GRANIAN_WORKING_DIR", None),
    ("env-files", "GRANIAN_ENV_FILES", None),
    ("static-path-route", "GRANIAN_STATIC_PATH_ROUTE", "/static"),
    ("static-path-mount", "GRANIAN_STATIC_PATH_MOUNT", None),
    ("static-path-dir-to-file", "GRANIAN_STATIC_PATH_DIR_TO_FILE", None),
    ("static-path-expires", "GRANIAN_STATIC_PATH_EXPIRES", "86400"),
    ("metrics", "GRANIAN_METRICS_ENABLED", "off"),
    ("metrics-scrape-interval", "GRANIAN_METRICS_SCRAPE_INTERVAL", "15"),
    ("metrics-address", "GRANIAN_METRICS_ADDRESS", "127.0.0.1"),
    ("metrics-port", "GRANIAN_METRICS_PORT", "9090"),
    ("reload", "GRANIAN_RELOAD", "off"),
    ("reload-paths", "GRANIAN_RELOAD_PATHS", None),
    ("reload-ignore-dirs", "GRANIAN_RELOAD_IGNORE_DIRS", None),
    ("reload-ignore-patterns", "GRANIAN_RELOAD_IGNORE_PATTERNS", None),
    ("reload-ignore-paths", "GRANIAN_RELOAD_IGNORE_PATHS", None),
    ("reload-tick", "GRANIAN_RELOAD_TICK", "50"),
    ("reload-ignore-worker-failure", "GRANIAN_RELOAD_IGNORE_WORKER_FAILURE", "off"),
    ("process-name", "GRANIAN_PROCESS_NAME", None),
    ("pid-file", "GRANIAN_PID_FILE", None),
    # granc's extensions
    ("http1-max-body-size", "GRANIAN_HTTP1_MAX_BODY_SIZE", "0"),
    ("ws-max-message-size", "GRANIAN_WS_MAX_MESSAGE_SIZE", "16777216"),
    ("fd", "GRANIAN_FD", None),
    ("forwarded-allow-ips", "GRANIAN_FORWARDED_ALLOW_IPS", None),
    ("graceful-timeout", "GRANIAN_GRACEFUL_TIMEOUT", None),
    ("max-requests", "GRANIAN_MAX_REQUESTS", "0"),
    ("max-requests-jitter", "GRANIAN_MAX_REQUESTS_JITTER", "0"),
    ("static-path-follow-symlinks", "GRANIAN_STATIC_PATH_FOLLOW_SYMLINKS", "off"),
]

# The variables that do not follow the flag name (click names them after the
# Python parameter).
IRREGULAR = {"ws": "GRANIAN_WEBSOCKETS", "log": "GRANIAN_LOG_ENABLED",
             "access-log": "GRANIAN_LOG_ACCESS_ENABLED",
             "access-log-fmt": "GRANIAN_LOG_ACCESS_FMT", "metrics": "GRANIAN_METRICS_ENABLED"}

# ---------------------------------------------------------------------------
# Known bugs, kept as strict xfails.
# ---------------------------------------------------------------------------
# (none open)

# ---------------------------------------------------------------------------
# How to test each option.  Keys:
#   lo, hi   range of numbers (the generic out-of-range values are lo-1, hi+1)
#   bad      extra invalid values: "v", or ("v", {"argv"|"env": xfail reason})
#   ok       a valid value other than the default ("on"/"off" for booleans)
#   same     other options set from the same source (argv or environment)
#   uds      serve on a Unix socket instead of --port 0
#   quiet    the log is silent: wait for readiness by polling requests
#   inherit  a listening TCP socket is passed to granc as this descriptor
#   target, cwd ("tmp"), path, workers, check(server, response, tmp)
# Values may hold {tmp} (a short temporary directory), {apps}, {busy} (a
# port something else listens on).
# ---------------------------------------------------------------------------


def _check_mode(mode):
    def check(s, r, tmp):
        assert stat.S_IMODE(os.stat(s.uds).st_mode) == mode
    return check


def _check_keepalive_off(s, r, tmp):
    assert r.headers.get("connection", "").lower() == "close"


def _check_single_thread(s, r, tmp):
    assert r.json()["wsgi.multithread"] is False


def _check_two_workers(s, r, tmp):
    assert len(s.worker_pids()) == 2


def _check_buffer(s, r, tmp):
    with client(s) as c:
        assert c.get(s_url(s, "/info"), headers={"x-big": "a" * 9000}).status_code == 431
        assert c.get(s_url(s, "/info"), headers={"x-big": "a" * 6000}).status_code == 200


def _check_body_limit(s, r, tmp):
    with client(s) as c:
        assert c.post(s_url(s, "/echo"), content=b"x" * 10).status_code == 200
    with client(s) as c:
        assert c.post(s_url(s, "/echo"), content=b"x" * 11).status_code == 413


def _check_silent(s, r, tmp):
    assert s.log() == ""


def _check_no_info(s, r, tmp):
    assert "[INFO]" not in s.log()


def _wait_log(s, needle):
    deadline = time.monotonic() + 5
    while needle not in s.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert needle in s.log()


def _check_access(s, r, tmp):
    _wait_log(s, '"GET /info HTTP/1.1" 200')


def _check_access_fmt(s, r, tmp):
    _wait_log(s, "ACC GET /info 200")


def _check_prefix(s, r, tmp):
    e = r.json()
    assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/pre", "/info")


def _check_sys_path(s, r, tmp):
    assert r.json()["_sys_path0"] == APPS


def _check_pid_file(s, r, tmp):
    with open(os.path.join(tmp, "granc.pid")) as f:
        assert int(f.read()) == s.proc.pid


def _check_forwarded(s, r, tmp):
    with client(s) as c:
        e = c.get(s_url(s, "/info"), headers={"x-forwarded-for": "1.2.3.4",
                                              "x-forwarded-proto": "https"}).json()
    assert (e["REMOTE_ADDR"], e["REMOTE_PORT"], e["wsgi.url_scheme"]) == ("1.2.3.4", "0", "https")


def _check_inherited(s, r, tmp):
    assert s.port == s.inherited_port


def _check_max_requests(s, r, tmp):
    # the first request was one; the second asks for a replacement
    with client(s) as c:
        assert c.get(s_url(s, "/info")).status_code == 200
    _wait_log(s, "worker-1 served its --max-requests, respawning")
    deadline = time.monotonic() + 20
    while s.log().count("Started worker-1") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.log().count("Started worker-1") == 2


def _check_log_config(s, r, tmp):
    assert "LOGCONF INFO Started worker-1" in s.log()


def _check_metrics(s, r, tmp):
    m = re.search(r"Metrics exporter listening at: http://127\.0\.0\.1:(\d+)", s.log())
    assert m, s.log()
    text = httpx.get(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=10).text
    assert "granian_" in text


def _check_reload(s, r, tmp):
    assert s.proc.poll() is None


def _proc(pid, what):
    with open(f"/proc/{pid}/{what}", "rb") as f:
        return f.read().rstrip(b"\0\n").decode()


def _check_process_name(s, r, tmp):
    assert _proc(s.proc.pid, "cmdline") == _proc(s.proc.pid, "comm") == "myapp"
    (worker,) = s.worker_pids()
    assert _proc(worker, "cmdline") == "myapp worker-1"
    assert _proc(worker, "comm") == "myapp worker-1"


RELOAD_TMP = {"reload": "on", "reload-paths": "{tmp}"}   # watch an empty directory

UDS_BAD = ["/nonexistent-granc-dir/g.sock", "/tmp/" + "x" * 120 + ".sock"]

SPEC = {
    # -- implemented
    "host": dict(ok="localhost", bad=["no-such-host.invalid"]),
    "port": dict(lo=0, hi=65535, ok="0", bad=["{busy}"]),
    "uds": dict(ok="{tmp}/g.sock", uds=True, bad=UDS_BAD),
    "uds-permissions": dict(lo=0, hi=0o7777, ok="0600", uds=True, check=_check_mode(0o600)),
    "interface": dict(ok="wsgi"),
    "http": dict(ok="1"),
    "ws": dict(ok="off"),
    "workers": dict(lo=1, ok="2", workers=2, check=_check_two_workers),
    "blocking-threads": dict(lo=1, ok="1", check=_check_single_thread),
    "blocking-threads-idle-timeout": dict(lo=5, hi=600, ok="5m30s"),
    "runtime-threads": dict(lo=1, ok="2"),
    "runtime-blocking-threads": dict(lo=1, ok="16"),
    "runtime-mode": dict(ok="st"),
    "loop": dict(ok="asyncio"),
    "task-impl": dict(ok="rust"),
    "backlog": dict(lo=128, ok="256"),
    "backpressure": dict(lo=1, ok="8"),
    "http1-buffer-size": dict(lo=8192, ok="8192", check=_check_buffer),
    "http1-header-read-timeout": dict(lo=1, hi=60000, ok="5000"),
    "http1-keep-alive": dict(ok="off", check=_check_keepalive_off),
    "http1-pipeline-flush": dict(ok="on"),
    "http1-max-body-size": dict(lo=0, ok="10", check=_check_body_limit),
    "ws-max-message-size": dict(lo=125, ok="1000"),
    "log": dict(ok="off", uds=True, quiet=True, check=_check_silent),
    "log-level": dict(ok="warning", uds=True, quiet=True, check=_check_no_info),
    "access-log": dict(ok="on", check=_check_access),
    "access-log-fmt": dict(ok="ACC %(method)s %(path)s %(status)d", same={"access-log": "on"},
                           check=_check_access_fmt,
                           bad=["%(", "%(status)q", "%(method)d", "50%"]),
    "url-path-prefix": dict(ok="/pre", path="/pre/info", check=_check_prefix),
    "respawn-interval": dict(lo=0, ok="0.5", bad=["0x10", "inf", "nan"]),
    "workers-kill-timeout": dict(lo=1, hi=1800, ok="1m"),
    "factory": dict(ok="on", target="wsgi_app:make_app"),
    "working-dir": dict(ok="{apps}", cwd="tmp", check=_check_sys_path,
                        bad=["/nonexistent-granc-dir", "{apps}/wsgi_app.py"]),
    "pid-file": dict(ok="{tmp}/granc.pid", check=_check_pid_file,
                     bad=["/nonexistent-granc-dir/granc.pid"]),
    "fd": dict(lo=0, ok="5", inherit=5, check=_check_inherited, bad=["99"]),
    "forwarded-allow-ips": dict(ok="127.0.0.1", check=_check_forwarded,
                                bad=["300.1.1.1", "1.2.3.4/99", "unix,nope"]),
    "graceful-timeout": dict(lo=1, hi=86400, ok="1m30s"),
    "max-requests": dict(lo=0, ok="2", same={"respawn-interval": "0.2"},
                         check=_check_max_requests),
    "max-requests-jitter": dict(lo=0, ok="3", same={"max-requests": "1000"}),
    "log-config": dict(ok="{apps}/log_config.json", check=_check_log_config,
                       bad=["{tmp}/missing.json"]),
    "metrics": dict(ok="on", same={"metrics-port": "0"}, check=_check_metrics),
    "metrics-scrape-interval": dict(lo=1, hi=60, ok="30"),
    "metrics-address": dict(ok="0.0.0.0"),
    "metrics-port": dict(hi=65535, ok="9100"),
    "reload": dict(ok="on", same={"reload-paths": "{tmp}"}, check=_check_reload),
    "reload-paths": dict(ok="{tmp}", same={"reload": "on"}, check=_check_reload,
                         bad=["/nonexistent-granc-dir"]),
    "reload-ignore-dirs": dict(ok="node_modules", same=RELOAD_TMP, check=_check_reload),
    "reload-ignore-patterns": dict(ok=r".*\.pyc", same=RELOAD_TMP, check=_check_reload,
                                   bad=["("]),
    "reload-ignore-paths": dict(ok="{tmp}/ignored", same=RELOAD_TMP, check=_check_reload),
    "reload-tick": dict(lo=50, hi=5000, ok="100", same=RELOAD_TMP, check=_check_reload),
    "reload-ignore-worker-failure": dict(ok="on", same=RELOAD_TMP, check=_check_reload),
    "process-name": dict(ok="myapp", check=_check_process_name),
    "static-path-route": dict(ok="/assets", bad=["assets"]),
    "static-path-mount": dict(ok="{tmp}", bad=["/nonexistent-granc-dir", "{apps}/wsgi_app.py"]),
    "static-path-dir-to-file": dict(ok="index.html", bad=["a/b"]),
    "static-path-expires": dict(lo=0, ok="1h"),
    "static-path-follow-symlinks": dict(ok="on"),
    "http2-adaptive-window": dict(ok="on"),
    "http2-initial-connection-window-size": dict(lo=1024, ok="2097152"),
    "http2-initial-stream-window-size": dict(lo=1024, ok="2097152"),
    "http2-keep-alive-interval": dict(lo=1, hi=60000, ok="1000"),
    "http2-keep-alive-timeout": dict(lo=1, ok="30s"),
    "http2-max-concurrent-streams": dict(lo=10, ok="100"),
    "http2-max-frame-size": dict(lo=16384, hi=16777215, ok="32768"),
    "http2-max-headers-size": dict(lo=1, ok="8192"),
    "http2-max-send-buffer-size": dict(lo=1024, ok="8192"),
    # -- not supported yet
    "ssl-certificate": dict(tls=True, ok="/etc/ssl/cert.pem"),
    "ssl-keyfile": dict(tls=True, ok="/etc/ssl/key.pem"),
    "ssl-keyfile-password": dict(tls=True, ok="secret"),
    "ssl-protocol-min": dict(tls=True, ok="tls1.2", bad=["tls1.3"]),
    "ssl-ca": dict(tls=True, ok="/etc/ssl/ca.pem"),
    "ssl-crl": dict(tls=True, ok="/etc/ssl/crl.pem"),
    "ssl-client-verify": dict(tls=True, ok="on"),
    "respawn-failed-workers": dict(ok="on"),
    "rss-sample-interval": dict(lo=1, hi=300, ok="1m"),
    "rss-samples": dict(lo=1, ok="3"),
    "workers-lifetime": dict(lo=60, ok="2h"),
    "workers-max-rss": dict(ok="512"),
    "env-files": dict(ok="{apps}/test.env", bad=["{tmp}/missing.env"]),
}

# Values of implemented options that granc refuses as features it lacks.
# (Every other choice is covered by test_every_choice_same_outcome.)
UNSUPPORTED_VALUES = []

# ---------------------------------------------------------------------------
# --help, parsed once at import: the parametrization depends on it.
# ---------------------------------------------------------------------------


def clean_env(extra=None):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("GRANIAN_") and k != "VIRTUAL_ENV"}
    e.update(extra or {})
    return e


HELP_LINE = re.compile(
    r"^  (?:--(?P<b>[a-z0-9-]+)/--no-(?P=b)|--(?P<n>[a-z0-9-]+) (?P<meta>\S+)) +"
    r"(?P<help>\S.*?) \[(?P<env>GRANIAN_[A-Z0-9_]+)(?:; default (?P<default>.*))?\]"
    r"(?: \((?P<mark>no effect in granc|not supported yet)\))?$")
STATUS = {None: "ok", "no effect in granc": "noop", "not supported yet": "todo"}


class Opt:
    def __init__(self, m):
        self.name = m["b"] or m["n"]
        self.kind = "BOOL" if m["b"] else m["meta"]
        self.choices = self.kind.split("|") if "|" in self.kind else None
        self.env = m["env"]
        self.raw_default = m["default"]
        self.default = None if not m["default"] or m["default"].startswith("(") \
            else m["default"]
        self.status = STATUS[m["mark"]]

    def __repr__(self):
        return self.name


def parse_help(text):
    opts, other, bad = [], [], []
    for line in text.splitlines():
        if not line.startswith("  --"):
            continue
        m = HELP_LINE.match(line)
        if m:
            opts.append(Opt(m))
        elif re.match(r"^  --(help|version) +\S", line):
            other.append(line.split()[0][2:])
        else:
            bad.append(line)
    return opts, other, bad


HELP = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30,
                      env=clean_env()).stdout
OPTS, HELP_OTHER, HELP_UNPARSED = parse_help(HELP)
BY_NAME = {o.name: o for o in OPTS}
BOOLS = [o for o in OPTS if o.kind == "BOOL"]
NUMERIC = ("INT", "BYTES", "DURATION", "SECONDS", "MODE")


def spec(o):
    assert o.name in SPEC, f"--{o.name}: new option, add it to SPEC in test_options.py"
    return SPEC[o.name]


def truthy(v):
    return v.lower() in ("1", "true", "t", "yes", "y", "on")


def argv_for(o, value, valid=True):
    """The command-line words setting option o to value."""
    if o.kind == "BOOL" and valid:
        return [f"--{o.name}"] if truthy(value) else [f"--no-{o.name}"]
    if valid:
        return [f"--{o.name}", value]
    return [f"--{o.name}={value}"]      # also for values starting with "-"


def label(o, src):
    return f"--{o.name}" if src == "argv" else o.env


def names(line, lab):
    return re.search(r"(?<![\w-])" + re.escape(lab) + r"(?![\w-])", line) is not None


# ---------------------------------------------------------------------------
# Running granc
# ---------------------------------------------------------------------------


class Ctx:
    """Placeholders and scratch space of one test."""

    def __init__(self):
        # short: a Unix socket path must fit in 108 bytes
        self.tmp = tempfile.mkdtemp(prefix="gopt", dir="/tmp")
        self.busy = None

    def sub(self, v):
        if "{busy}" in v and self.busy is None:
            self.busy = socket.socket()
            self.busy.bind(("127.0.0.1", 0))
            self.busy.listen(1)
        return v.replace("{tmp}", self.tmp).replace("{apps}", APPS).replace(
            "{busy}", str(self.busy.getsockname()[1]) if self.busy else "")

    def close(self):
        if self.busy:
            self.busy.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def ctx():
    c = Ctx()
    yield c
    c.close()


def base_argv(skip=(), uds=None):
    """--interface wsgi and the socket, unless the option under test is one."""
    a = []
    if "interface" not in skip:
        a += ["--interface", "wsgi"]
    if uds:
        a += ["--uds", uds]
    elif "port" not in skip:
        a += ["--port", "0"]
    return a


def build(o, value, src, s, c, valid=True):
    """argv (without APP) and env setting o=value, and s['same'], from src."""
    same = [(BY_NAME[k], c.sub(v)) for k, v in s.get("same", {}).items()]
    argv, env = base_argv(skip={o.name} | {p.name for p, _ in same}), {}
    for opt, v in [(o, value)] + same:
        if src == "argv":
            argv += argv_for(opt, v, valid)
        else:
            env[opt.env] = v
    return argv, env


class Result:
    def __init__(self, rc, out, err, served):
        self.rc, self.out, self.err, self.served = rc, out, err, served
        self.lines = [l for l in err.splitlines() if l.strip()]


def attempt(argv, env=None, cwd=APPS, timeout=20):
    """Run granc, expecting it to exit before serving.  If it binds anyway,
    stop it at once (served=True) instead of hanging the suite."""
    fd, out_path = tempfile.mkstemp(prefix="gopt-out")
    os.close(fd)
    try:
        with open(out_path, "wb") as out:
            p = subprocess.Popen([BIN] + argv, stdout=out, stderr=subprocess.PIPE,
                                 cwd=cwd, env=clean_env(env))
        served, deadline = False, time.monotonic() + timeout
        while p.poll() is None:
            with open(out_path, "rb") as f:
                log = f.read()
            # bound and serving: logged, or (quiet log levels) workers forked
            if b"Listening at" in log or _has_children(p.pid) \
                    or time.monotonic() > deadline:
                served = True
                p.send_signal(signal.SIGTERM)
                break
            time.sleep(0.005)
        err = p.communicate(timeout=30)[1].decode("utf-8", "replace")
        with open(out_path, "rb") as f:
            out_text = f.read().decode("utf-8", "replace")
        return Result(p.returncode, out_text, err, served)
    finally:
        os.unlink(out_path)


def _has_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().strip())
    except OSError:
        return False


def probe(argv, env=None):
    """Parse only: no APP, so a value that parses ends in 'missing APP'."""
    return attempt(argv, env)


def parsed_ok(r):
    return r.rc == 1 and len(r.lines) == 1 and "missing APP argument" in r.lines[0]


def assert_one_error(r, lab, needle=None):
    assert not r.served, f"granc did not exit (it served, or hung): {r.out}"
    assert r.rc == 1, (r.rc, r.err)
    assert len(r.lines) == 1, f"want exactly one stderr line, got:\n{r.err}"
    assert names(r.lines[0], lab), f"{lab!r} not named in: {r.lines[0]}"
    if needle:
        assert needle in r.lines[0], r.lines[0]
    assert "Listening" not in r.out


def same_outcome(r_env, r_argv, o):
    """The env error is the argv error with the flag renamed to the variable."""
    pat = r"(?<![\w-])" + re.escape(f"--{o.name}") + r"(?![\w-])"
    assert r_env.lines[0] == re.sub(pat, o.env, r_argv.lines[0], count=1)


class OptServer(Server):
    """A Server whose command line is exactly what the test gives; with
    inherit, a listening socket is passed to it as that descriptor."""

    def __init__(self, argv, target, env, cwd, uds, workers, quiet, inherit=None):
        super().__init__(target, env=env, cwd=cwd, uds=uds, workers=workers)
        self.argv, self.quiet, self.inherit = argv, quiet, inherit
        self.inherited_port = None

    def cmd(self):
        return [BIN] + self.argv + [self.target]

    def start(self, wait=True):
        if self.inherit is None:
            return super().start(wait)
        sk = socket.socket()
        sk.bind(("127.0.0.1", 0))
        sk.listen(16)
        self.inherited_port = sk.getsockname()[1]
        src, dst = sk.fileno(), self.inherit

        def pre():
            os.dup2(src, dst, inheritable=True)
        self.logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.cmd(), stdout=self.logf, stderr=subprocess.STDOUT,
                                         cwd=self.cwd, env=self.env, pass_fds=[dst],
                                         preexec_fn=pre)
        finally:
            sk.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        if not self.quiet:
            return super().wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:      # no log to read: poll
            if self.proc.poll() is not None:
                raise RuntimeError(f"granc exited {self.proc.returncode}:\n{self.log()}")
            try:
                with client(self) as c:
                    c.get(s_url(self, "/info"))
                return
            except httpx.TransportError:
                time.sleep(0.02)
        raise RuntimeError("granc did not start")


def client(s):
    if s.uds:
        return httpx.Client(transport=httpx.HTTPTransport(uds=s.uds), timeout=10)
    return httpx.Client(timeout=10)


def s_url(s, path):
    return ("http://granc" if s.uds else s.url) + path


def serve_once(argv, env=None, target="wsgi_app:app", cwd=APPS, uds=None, workers=1,
               quiet=False, path="/info", check=None, tmp=None, inherit=None):
    """Start granc, make one request, run check, stop; exit status must be 0."""
    s = OptServer(argv, target, env, cwd, uds, workers, quiet, inherit)
    try:
        s.start()
        with client(s) as c:
            r = c.get(s_url(s, path))
        assert r.status_code == 200, (r.status_code, r.text)
        if check:
            check(s, r, tmp)
    finally:
        rc = s.stop()
        try:
            os.unlink(s.log_path)
        except OSError:
            pass
    assert rc == 0
    return r


def opt_id(o):
    return o.name


# ===========================================================================
# 1. --help against Granian's list
# ===========================================================================

def test_help_every_line_parses():
    assert OPTS, HELP
    assert HELP_UNPARSED == []
    assert sorted(HELP_OTHER) == ["help", "version"]


def test_help_lists_exactly_granian_options():
    got = [(o.name, o.env) for o in OPTS]
    assert len(set(got)) == len(got), "duplicate rows"
    assert len({o.env for o in OPTS}) == len(OPTS), "two flags share a variable"
    want = [(f, e) for f, e, _ in EXPECTED]
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert (missing, extra) == ([], [])


def test_variable_names_follow_click():
    """GRANIAN_ + the flag in capitals, but for the five irregular ones."""
    for o in OPTS:
        regular = "GRANIAN_" + o.name.upper().replace("-", "_")
        assert o.env == IRREGULAR.get(o.name, regular), o.name


@pytest.mark.parametrize("flag,env,default", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_help_default_matches_granian(flag, env, default):
    o = BY_NAME.get(flag)
    assert o is not None, f"--{flag} missing from --help"
    assert o.default == default, o.raw_default


def test_every_option_has_test_data():
    assert sorted(set(BY_NAME) - set(SPEC)) == []
    assert sorted(set(SPEC) - set(BY_NAME)) == []


# ===========================================================================
# 2. Same value, same outcome, from argv and from the environment
# ===========================================================================

def _invalid_values(o):
    s = SPEC.get(o.name, {})
    vals = []
    if o.kind == "BOOL":
        vals = ["maybe", "2", "tru"]
    elif o.choices:
        vals = ["bogus", o.choices[0] + "x"]
    elif o.kind in ("INT", "BYTES"):
        vals = ["abc", "12x", "1.5", "99999999999999999999999"]
    elif o.kind == "DURATION":
        vals = ["abc", "1h2x", "1x", "m1", "5s5m"]
    elif o.kind == "SECONDS":
        vals = ["abc", "-1", "nan", "inf"]
    elif o.kind == "MODE":
        vals = ["abc", "0999", "0o20000"]
    if o.kind in NUMERIC:
        if s.get("lo") is not None:
            vals.append(str(s["lo"] - 1))
        if s.get("hi") is not None:
            vals.append(str(s["hi"] + 1))
    out = []
    for v in vals + list(s.get("bad", [])):
        out.append(v if isinstance(v, tuple) else (v, {}))
    return out


def _invalid_cases():
    for o in OPTS:
        for value, bugs in _invalid_values(o):
            for src in ("argv", "env"):
                marks = [pytest.mark.xfail(strict=True, reason=bugs[src])] if src in bugs \
                    else []
                vid = value if len(value) <= 24 else value[:20] + "..."
                yield pytest.param(o, value, src, marks=marks, id=f"{o.name}={vid}-{src}")


@pytest.mark.parametrize("o,value,src", list(_invalid_cases()))
def test_invalid_value(o, value, src, ctx):
    """Exit 1, one stderr line naming the flag (argv) or the variable (env);
    the env message is the argv message with the name changed."""
    s = spec(o)
    value = ctx.sub(value)
    argv, env = build(o, value, src, s, ctx, valid=False)
    r = attempt(argv + ["wsgi_app:app"], env)
    assert_one_error(r, label(o, src))
    if src == "env":
        argv2, env2 = build(o, value, "argv", s, ctx, valid=False)
        r2 = attempt(argv2 + ["wsgi_app:app"], env2)
        assert_one_error(r2, label(o, "argv"))
        same_outcome(r, r2, o)


def test_every_option_type_is_known():
    """A new kind of value would get no generic invalid values: make it known."""
    kinds = set(NUMERIC) | {"BOOL", "TEXT", "TEXT...", "PATH..."}
    assert sorted(o.name for o in OPTS if o.kind not in kinds and not o.choices) == []


@pytest.mark.parametrize("o", [o for o in OPTS if _invalid_values(o)], ids=opt_id)
def test_argv_beats_invalid_variable(o, ctx):
    """With the option on argv, its variable is not even parsed (click)."""
    value = ctx.sub(spec(o)["ok"])     # parses (a "todo" one is refused later)
    bad = ctx.sub(_invalid_values(o)[0][0])
    r = probe(argv_for(o, value), {o.env: bad})
    assert parsed_ok(r), r.err


def test_empty_variables_are_unset():
    """An empty GRANIAN_* variable counts as unset: no parse error, no
    'not supported yet', no unknown-variable warning; the server starts."""
    env = {o.env: "" for o in OPTS}
    assert parsed_ok(probe([], env))

    def check(s, r, tmp):
        assert "Unknown environment variable" not in s.log()
    serve_once(base_argv(), env, check=check)


TODO = [o for o in OPTS if o.status == "todo"]
DOING = [o for o in OPTS if o.status != "todo"]


@pytest.mark.parametrize("src", ["argv", "env"])
@pytest.mark.parametrize("o", TODO, ids=opt_id)
def test_unsupported_option_refused(o, src, ctx):
    s = spec(o)
    if s.get("tls"):
        pytest.skip("needs certificates: served over TLS in tests/test_tls.py")
    value = ctx.sub(s["ok"])
    assert value != o.default
    argv, env = build(o, value, src, s, ctx)
    r = attempt(argv + ["wsgi_app:app"], env)
    assert_one_error(r, label(o, src), "not supported yet")
    if src == "env":
        argv2, env2 = build(o, value, "argv", s, ctx)
        r2 = attempt(argv2 + ["wsgi_app:app"], env2)
        same_outcome(r, r2, o)


@pytest.mark.parametrize("src", ["argv", "env"])
def test_http2_options_ignored_with_http_1(src, ctx):
    """With --http 1, Granian ignores the --http2-* settings; so does granc:
    the server starts with every one of them set."""
    h2 = [o for o in OPTS if o.name.startswith("http2-")]
    assert len(h2) == 9
    argv, env = base_argv() + ["--http", "1"], {}
    for o in h2:
        value = ctx.sub(spec(o)["ok"])
        if src == "argv":
            argv += argv_for(o, value)
        else:
            env[o.env] = value
    serve_once(argv, env)


@pytest.mark.parametrize("src", ["argv", "env"])
def test_unsupported_options_accepted_at_their_default(src, ctx):
    """Given explicitly with the default --help shows, they are accepted:
    the server starts.  This also proves --help's defaults are the real ones."""
    if not TODO:
        pytest.skip("every option is supported")
    argv, env = base_argv(), {}
    for o in TODO:
        if o.default is None:
            continue
        if src == "argv":
            argv += argv_for(o, o.default)
        else:
            env[o.env] = o.default
    assert len(argv) + len(env) > 0
    serve_once(argv, env)


@pytest.mark.parametrize("src", ["argv", "env"])
@pytest.mark.parametrize("name,value", UNSUPPORTED_VALUES,
                         ids=[f"{n}={v}" for n, v in UNSUPPORTED_VALUES])
def test_unsupported_value_of_implemented_option(name, value, src, ctx):
    o = BY_NAME[name]
    argv, env = build(o, value, src, {}, ctx)
    r = attempt(argv + ["wsgi_app:app"], env)
    assert_one_error(r, label(o, src), "not supported yet")
    if src == "env":
        argv2, env2 = build(o, value, "argv", {}, ctx)
        same_outcome(r, attempt(argv2 + ["wsgi_app:app"], env2), o)


CHOICES = [(o, c) for o in OPTS if o.choices for c in o.choices]


@pytest.mark.parametrize("o,choice", CHOICES, ids=[f"{o.name}={c}" for o, c in CHOICES])
def test_every_choice_same_outcome(o, choice, ctx):
    """Each listed word, from argv and from the environment, either starts
    the server or is refused with one line naming the flag or variable --
    the same outcome from both sources."""
    res = {}
    for src in ("argv", "env"):
        argv, env = build(o, choice, src, {}, ctx)
        r = res[src] = attempt(argv + ["wsgi_app:app"], env)
        if not r.served:
            assert_one_error(r, label(o, src))
    assert res["argv"].served == res["env"].served
    if not res["env"].served:
        same_outcome(res["env"], res["argv"], o)
    else:
        assert res["argv"].rc == res["env"].rc == 0, (res["argv"].err, res["env"].err)


@pytest.mark.parametrize("src", ["argv", "env"])
@pytest.mark.parametrize("o", DOING, ids=opt_id)
def test_implemented_option_starts(o, src, ctx):
    """A valid non-default value: the server starts, serves, stops with 0,
    and where the option is observable its effect is checked."""
    s = spec(o)
    if s.get("tls"):
        pytest.skip("needs certificates: served over TLS in tests/test_tls.py")
    value = ctx.sub(s["ok"])
    assert value != o.default
    uds = None
    if s.get("uds"):
        uds = value if o.name == "uds" else os.path.join(ctx.tmp, "g.sock")
    same = [(BY_NAME[k], ctx.sub(v)) for k, v in s.get("same", {}).items()]
    skip = {o.name} | {p.name for p, _ in same}
    argv = base_argv(skip=skip, uds=None if o.name == "uds" else uds)
    env = {}
    for opt, v in [(o, value)] + same:
        if src == "argv":
            argv += argv_for(opt, v)
        else:
            env[opt.env] = v
    serve_once(argv, env, target=s.get("target", "wsgi_app:app"),
               cwd=ctx.tmp if s.get("cwd") == "tmp" else APPS, uds=uds,
               workers=s.get("workers", 1), quiet=s.get("quiet", False),
               path=s.get("path", "/info"), check=s.get("check"), tmp=ctx.tmp,
               inherit=s.get("inherit"))


# ===========================================================================
# 3. Booleans
# ===========================================================================

SPELLINGS = ["1", "0", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"]


@pytest.mark.parametrize("o", BOOLS, ids=opt_id)
def test_bool_spellings_parse(o):
    """Every spelling in lower, upper and mixed case from the environment;
    --X and --no-X on argv; --no-X=value and --no-<non-bool> refused."""
    for word in SPELLINGS:
        for v in {word, word.upper(), word[0].upper() + word[1:]}:
            r = probe([], {o.env: v})
            assert parsed_ok(r), (o.env, v, r.err)
    for a in (f"--{o.name}", f"--no-{o.name}"):
        r = probe([a])
        assert parsed_ok(r), (a, r.err)
    r = probe([f"--no-{o.name}=1"])
    assert r.rc == 1 and len(r.lines) == 1 and names(r.lines[0], f"--no-{o.name}"), r.err


@pytest.mark.parametrize("o", [o for o in OPTS if o.kind != "BOOL"], ids=opt_id)
def test_no_prefix_only_for_booleans(o):
    r = probe([f"--no-{o.name}"])
    assert r.rc == 1 and len(r.lines) == 1, r.err
    assert names(r.lines[0], f"--no-{o.name}") and "unknown option" in r.lines[0]


KA_SPELLINGS = ["1", "0", "True", "fAlse", "YES", "No", "oN", "OFF", "T", "f", "y", "N"]


def _keep_alive(r):
    return r.headers.get("connection", "").lower() != "close"


@pytest.mark.parametrize("v", KA_SPELLINGS)
def test_keep_alive_env_spelling_effect(v):
    r = serve_once(base_argv(), {"GRANIAN_HTTP1_KEEP_ALIVE": v})
    assert _keep_alive(r) == truthy(v)


@pytest.mark.parametrize("flag,env,want", [
    ("--http1-keep-alive", None, True),
    ("--no-http1-keep-alive", None, False),
    ("--http1-keep-alive", "off", True),        # argv wins over the variable
    ("--no-http1-keep-alive", "on", False),
])
def test_keep_alive_argv_effect(flag, env, want):
    r = serve_once(base_argv() + [flag], {"GRANIAN_HTTP1_KEEP_ALIVE": env} if env else None)
    assert _keep_alive(r) == want


# ===========================================================================
# 4. Durations: --blocking-threads-idle-timeout, 5..600 s
# ===========================================================================

IDLE = "blocking-threads-idle-timeout"


@pytest.mark.parametrize("src", ["argv", "env"])
@pytest.mark.parametrize("v", ["30", "1m", "5m30s", "10m"])
def test_duration_accepted(v, src):
    o = BY_NAME[IDLE]
    if src == "argv":
        serve_once(base_argv() + [f"--{IDLE}", v])
    else:
        serve_once(base_argv(), {o.env: v})


@pytest.mark.parametrize("src", ["argv", "env"])
@pytest.mark.parametrize("v", ["4", "601", "11m", "1h", "1x", "m1", "4s", "10m1s", "1m30"])
def test_duration_rejected(v, src):
    o = BY_NAME[IDLE]
    if src == "argv":
        r = probe([f"--{IDLE}", v])
    else:
        r = probe([], {o.env: v})
    assert r.rc == 1 and len(r.lines) == 1, r.err
    assert names(r.lines[0], label(o, src)) and "duration" in r.lines[0], r.lines[0]


@pytest.mark.parametrize("v", ["5", "5s", "600", "9m60s", "0d0h10m"])
def test_duration_bounds_parse(v):
    assert parsed_ok(probe([f"--{IDLE}", v]))


# ===========================================================================
# 5. The manual page
# ===========================================================================

MAN_IT = re.compile(r"^\.It Fl -([a-z0-9-]+)(?: , Fl -no-([a-z0-9-]+))?(?: Ar \S+)?$")


def _man():
    with open(MAN) as f:
        return f.read()


def man_entries():
    """{flag: (is_bool_form, body text)} of the `.It Fl -flag` entries."""
    entries, cur, malformed = {}, None, []
    for line in _man().splitlines():
        if line.startswith(".It") or line.startswith(".El"):
            cur = None
        if line.startswith(".It Fl -"):
            m = MAN_IT.match(line)
            if not m:
                malformed.append(line)
                continue
            name, neg = m.groups()
            assert neg is None or neg == name, line
            assert name not in entries, f"two entries for --{name}"
            entries[name] = [neg is not None, []]
            cur = entries[name][1]
        elif cur is not None:
            cur.append(line)
    return {k: (b, "\n".join(body)) for k, (b, body) in entries.items()}, malformed


def test_man_entries_match_help():
    entries, malformed = man_entries()
    assert malformed == []
    helped = {o.name for o in OPTS} | set(HELP_OTHER)
    assert sorted(helped - set(entries)) == [], "in --help, not in granc.1"
    assert sorted(set(entries) - helped) == [], "in granc.1, not in --help"


def test_man_boolean_forms():
    entries, _ = man_entries()
    for o in OPTS:
        if o.name in entries:
            assert entries[o.name][0] == (o.kind == "BOOL"), o.name


def test_man_variables_match_help():
    text = _man()
    in_man = set(re.findall(r"GRANIAN_[A-Z0-9]+(?:_[A-Z0-9]+)*", text))
    in_help = {o.env for o in OPTS}
    assert sorted(in_help - in_man) == []
    assert sorted(in_man - in_help) == []
    entries, _ = man_entries()
    for o in OPTS:        # and each entry names its own variable
        body = entries.get(o.name, (False, ""))[1]
        assert re.findall(r"^\.Ev (GRANIAN_\w+)", body, re.M)[-1:] == [o.env], o.name


def _man_default(body):
    m = re.search(r"default:\n\.(?:Cm|Ql) (.*) \.$", body, re.M)
    if not m:
        return None
    return m.group(1).replace(r"\(dq", '"').replace(r"\e", "\\")


def test_man_defaults_match_help():
    entries, _ = man_entries()
    for o in OPTS:
        if o.name in entries:
            assert _man_default(entries[o.name][1]) == o.default, o.name


def test_man_irregular_variables_listed():
    """ENVIRONMENT lists the variables that do not follow the flag name."""
    env_sec = _man().split(".Sh ENVIRONMENT", 1)[1].split(".Sh ", 1)[0]
    irregular = {o.name: o.env for o in OPTS
                 if o.env != "GRANIAN_" + o.name.upper().replace("-", "_")}
    assert irregular
    for name, env in irregular.items():
        assert re.search(r"\.Ev %s\n\.Pq Fl -%s\b" % (env, re.escape(name)), env_sec), name


def test_man_support_status_matches_help():
    entries, _ = man_entries()
    section = {}
    cur = None
    for line in _man().splitlines():
        if line.startswith(".Ss "):
            cur = line[4:]
        m = MAN_IT.match(line)
        if m:
            section[m.group(1)] = cur
    for o in OPTS:
        body = entries.get(o.name, (False, ""))[1].lower()
        if o.status == "todo":
            assert "not supported yet" in body, o.name
        if section.get(o.name) == "Not supported yet":
            assert o.status == "todo", o.name
        if o.status == "noop":      # the reader is told it does nothing
            assert "no effect" in body or "ignored" in body, o.name


def test_mandoc_lint():
    r = subprocess.run(["mandoc", "-Tlint", MAN], capture_output=True, text=True, timeout=30)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "mandoc.db" not in l]
    # WARNING and worse (ERROR, UNSUPP, BADARG)
    bad = [l for l in lines if re.search(r"\b(WARNING|ERROR|UNSUPP|BADARG)\b", l)]
    assert bad == []


def test_version_matches_man():
    r = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10,
                       env=clean_env())
    assert r.returncode == 0
    m = re.fullmatch(r"granc (\S+) \(granian (\S+) compatible\)\n", r.stdout)
    assert m, r.stdout
    granc_v, granian_v = m.groups()
    assert granian_v == GRANIAN_VERSION
    text = _man()
    assert re.search(r"\bGranian %s\b" % re.escape(GRANIAN_VERSION), text)
    assert set(re.findall(r"\bGranian (\d+\.\d+\.\d+)", text)) == {GRANIAN_VERSION}
    os_line = re.search(r"^\.Os(.*)$", text, re.M).group(1).split()
    stated = [w for w in os_line if re.fullmatch(r"\d+\.\d+(\.\d+)?", w)]
    stated += re.findall(r"\bgranc (\d+\.\d+\.\d+)", text)
    for v in stated:                # the man page states no granc version today
        assert v == granc_v
