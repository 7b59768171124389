"""Granian's Python API (python/granian): programs that call
`Granian(...).serve()` run granc.  Each test runs a small caller script with
the package on PYTHONPATH and $GRANC at the suite's binary, and checks what
granc does (sockets, workers, logs, signals), not the argv it got.
"""
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from conftest import APPS, ASAN, BIN, ROOT, START_TIMEOUT, free_port

SHIM = os.path.join(ROOT, "python")
sys.path.insert(0, SHIM)            # the in-process checks import it too

from granian import Granian  # noqa: E402
from granian.errors import ConfigurationError, FatalError, PidFileError  # noqa: E402

PRELUDE = """\
import os, sys
from pathlib import Path
from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
"""

EPILOGUE = """
try:
    print("SERVE RETURNED", repr(server.serve()), flush=True)
except SystemExit as e:
    print("SYSTEMEXIT", e.code, flush=True)
    raise
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (its parent may not have reaped it yet)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Caller:
    """A Python program that builds `server = Granian(...)` and serves it."""

    def __init__(self, tmp_path, body, env=None, cwd=APPS, script=None):
        self.path = str(tmp_path / "caller.py")
        with open(self.path, "w") as f:
            f.write(script or PRELUDE + textwrap.dedent(body) + EPILOGUE)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GRANIAN_") and k != "VIRTUAL_ENV"}
        self.env.update(PYTHONPATH=SHIM, GRANC=BIN, TMPDIR=str(tmp_path))
        self.env.update(env or {})
        self.cwd = cwd
        self.log_path = str(tmp_path / "caller.log")
        self.proc = None

    def start(self, args=(), wait=True, workers=1):
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, self.path, *args], cwd=self.cwd,
                                     env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(workers)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, count=1, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.log())
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"caller exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} x{count} in:\n{self.log()}")

    def wait_ready(self, workers=1):
        self.wait_for(r"Started worker-\d+", workers)
        m = re.search(r"Listening at: https?://[^ ]*:(\d+)", self.log())
        self.port = int(m.group(1)) if m else None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def granc_pids(self):
        out = self.log()
        return ([int(p) for p in re.findall(r"main PID: (\d+)", out)]
                + [int(p) for p in re.findall(r"Spawning worker-\d+ with PID: (\d+)", out)])

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        finally:
            self.logf.close()
            if ASAN:
                assert "AddressSanitizer" not in self.log() and "runtime error:" not in self.log()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.granc_pids() if self.proc else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- every kwarg family reaches granc ---------------------------------------

@pytest.mark.parametrize("style", ["enums", "strings"])
def test_asgi_enums_and_strings(tmp_path, style):
    """Enum members and their plain strings mean the same; GRANIAN_*
    variables in the caller's environment change nothing."""
    if style == "enums":
        kw = """interface=Interfaces.ASGI, http=HTTPModes.http1, loop=Loops.asyncio,
                task_impl=TaskImpl.asyncio, runtime_mode=RuntimeModes.st,
                log_level=LogLevels.info"""
    else:
        kw = """interface="asgi", http="1", loop="asyncio", task_impl="asyncio",
                runtime_mode="st", log_level="info\""""
    body = f"""server = Granian("asgi_app:app", port=0, websockets=False, {kw})\n"""
    env = {"GRANIAN_WORKERS": "3", "GRANIAN_INTERFACE": "wsgi", "GRANIAN_PORT": "1",
           "GRANIAN_LOG_ACCESS_ENABLED": "1", "GRANIAN_URL_PATH_PREFIX": "/env"}
    with Caller(tmp_path, body, env=env) as c:
        c.start()
        info = httpx.get(c.url + "/info").json()
        assert info["type"] == "http" and info["root_path"] == ""
        assert info["loop"].startswith("asyncio")   # auto would pick uvloop
        # websockets=False: the upgrade is refused
        r = httpx.get(c.url + "/ws_echo", headers={
            "connection": "upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert r.status_code != 101
        assert c.stop(signal.SIGINT if style == "strings" else signal.SIGTERM) == 0
        out = c.log()
    assert "SERVE RETURNED None" in out, out
    assert out.count("Started worker-") == 1 and "GRANIAN_" not in out, out
    assert '"GET /info' not in out          # no access log from the variable


def test_rsgi_default_interface(tmp_path):
    """Granian's default interface, RSGI, with its exceptions importable
    from granian.rsgi (granc's package: they are granc's own classes)."""
    body = """server = Granian("rsgi_app:app", port=0)\n"""
    with Caller(tmp_path, body) as c:
        c.start()
        info = httpx.get(c.url + "/info").json()
        assert info["proto"] == "http" and info["rsgi_version"] == "1.6"
        r = httpx.post(c.url + "/body_twice", content=b"x")
        assert r.json() == ["granian._granian.RSGIProtocolError:True"] * 2
        assert c.stop() == 0


def test_wsgi_uds_workers_access_log_and_more(tmp_path):
    """uds (str) + uds_permissions, workers, blocking_threads, access log and
    its format, url_path_prefix, env_files (Path), working_dir, factory,
    metrics, backlog/backpressure clamps."""
    sock = tmp_path / "app.sock"
    body = f"""
    server = Granian(
        "wsgi_app:make_app", interface=Interfaces.WSGI, factory=True,
        uds={str(sock)!r}, uds_permissions=0o640, workers=2, blocking_threads=3,
        backlog=1, backpressure=0, log_access=True,
        log_access_format="ACCESS %(method)s %(path)s %(status)d",
        url_path_prefix="/pre", env_files=[Path({os.path.join(APPS, 'test.env')!r})],
        working_dir=Path({APPS!r}), metrics_enabled=True, metrics_port=0,
        metrics_scrape_interval=1, runtime_threads=0, respawn_failed_workers=True)
    """
    with Caller(tmp_path, body, cwd=str(tmp_path)) as c:
        c.start(workers=2)
        assert (os.stat(sock).st_mode & 0o777) == 0o640
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as cl:
            r = cl.get("http://x/pre/info")
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["SCRIPT_NAME"] == "/pre" and info["GRANC_ENV_FILE_TEST"] == "1"
        assert info["_sys_path0"] == APPS and info["_thread"] != "MainThread"
        assert "Spawning worker-2" in c.log()
        mport = c.wait_for(r"Metrics exporter listening at: http://[^ ]*:(\d+)")[0]
        m = httpx.get(f"http://127.0.0.1:{mport}/metrics")
        assert m.status_code == 200 and "granian_" in m.text
        assert c.stop() == 0
        out = c.log()
    assert "ACCESS GET /pre/info 200" in out, out
    assert not sock.exists()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed EC certificate and its key, encrypted with "secret"."""
    d = tmp_path_factory.mktemp("pyapi-tls")
    crt, plain, key = d / "srv.crt", d / "plain.key", d / "srv.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(plain),
                    "-out", str(crt), "-subj", "/CN=localhost", "-days", "2",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(plain), "-out", str(key),
                    "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-passout", "pass:secret"],
                   check=True, capture_output=True)
    return str(crt), key


def test_tls(tmp_path, cert):
    """ssl_cert as str, ssl_key as Path, ssl_key_password: HTTPS; an explicit
    tls1.2 minimum is passed; Granian's default (tls1.3) is not."""
    crt, key = cert
    body = f"""
    server = Granian("wsgi_app:app", interface="wsgi", port=0, ssl_cert={crt!r},
                     ssl_key=Path({str(key)!r}), ssl_key_password="secret",
                     ssl_protocol_min=SSLProtocols.tls12, ssl_client_verify=True)
    """
    with Caller(tmp_path, body) as c:
        c.start()
        assert "Listening at: https://" in c.log()
        ctx = ssl.create_default_context(cafile=crt)
        r = httpx.get(f"https://127.0.0.1:{c.port}/info", verify=ctx)
        assert r.json()["wsgi.url_scheme"] == "https"
        assert c.stop() == 0


def test_http_settings_objects(tmp_path):
    """HTTP1Settings change granc's limits (a head over max_buffer_size gets
    431, keep_alive=False closes); values the CLI would refuse are clamped;
    HTTP/2 settings are ignored when only HTTP/1 is served."""
    body = """
    server = Granian("wsgi_app:app", interface=Interfaces.WSGI, port=0, http="1",
                     http1_settings=HTTP1Settings(keep_alive=False, max_buffer_size=8192,
                                                  header_read_timeout=120_000),
                     http2_settings=HTTP2Settings(adaptive_window=True,
                                                  max_concurrent_streams=5))
    """
    with Caller(tmp_path, body) as c:
        c.start()
        r = httpx.get(c.url + "/info")
        assert r.status_code == 200 and r.headers["connection"] == "close"
        r = httpx.get(c.url + "/info", headers={"x-big": "a" * 10000})
        assert r.status_code == 431
        assert c.stop() == 0


def test_log_dictconfig(tmp_path):
    """log_dictconfig travels as a temporary JSON file (gone afterwards):
    access lines go to the file handler it names."""
    access = tmp_path / "access.log"
    body = f"""
    import copy
    from granian.log import LOGGING_CONFIG
    conf = copy.deepcopy(LOGGING_CONFIG)
    conf["handlers"]["access"] = {{"class": "logging.FileHandler", "formatter": "access",
                                   "filename": {str(access)!r}}}
    server = Granian("wsgi_app:app", interface="wsgi", port=0, log_access=True,
                     log_dictconfig=conf)
    """
    with Caller(tmp_path, body) as c:
        c.start()
        assert len(list(tmp_path.glob("granian-logconfig-*.json"))) == 1
        httpx.get(c.url + "/info")
        assert c.stop() == 0
    assert '"GET /info HTTP/1.1" 200' in access.read_text()
    assert list(tmp_path.glob("granian-logconfig-*.json")) == []


def test_hooks_signals_and_pid_file(tmp_path):
    """Hooks run in order (startup before granc starts: the app sees what
    it set), SIGHUP runs reload hooks and restarts the workers, the pid
    file holds the caller's pid, SIGTERM stops granc and serve() returns."""
    notes, pid_file = tmp_path / "notes", tmp_path / "server.pid"
    body = f"""
    server = Granian("wsgi_app:app", interface="wsgi", port=0, respawn_interval=0.1,
                     pid_file={str(pid_file)!r})

    def note(what):
        with open({str(notes)!r}, "a") as f:
            f.write(what + "\\n")

    @server.on_startup
    def first():
        os.environ["HOOKED"] = "yes"
        note("startup-1")

    server.on_startup(lambda: note("startup-2"))
    server.on_reload(lambda: note("reload"))
    server.on_shutdown(lambda: note("shutdown"))
    """
    with Caller(tmp_path, body) as c:
        c.start()
        assert int(pid_file.read_text()) == c.proc.pid
        assert httpx.get(c.url + "/info").json()["HOOKED"] == "yes"
        os.kill(int(pid_file.read_text()), signal.SIGHUP)
        c.wait_for(r"Started worker-1", 2)
        assert httpx.get(c.url + "/info").status_code == 200
        assert c.stop() == 0
        out = c.log()
    assert notes.read_text().split() == ["startup-1", "startup-2", "reload", "shutdown"]
    assert out.rstrip().endswith("SERVE RETURNED None"), out
    assert not pid_file.exists()


def test_sigkill_of_the_caller_leaves_nothing(tmp_path):
    """The caller killed outright: granc and its workers are gone within
    two seconds."""
    body = """server = Granian("wsgi_app:app", interface="wsgi", port=0, workers=2)\n"""
    with Caller(tmp_path, body) as c:
        c.start(workers=2)
        pids = c.granc_pids()
        assert len(pids) == 3
        c.stop(signal.SIGKILL)
        deadline = time.monotonic() + 2
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if alive(p)], c.log()


def test_reload_on_changes(tmp_path):
    """reload=True with reload_paths: an edit restarts the workers."""
    app = tmp_path / "app.py"
    app.write_text("def app(e, s):\n    s('200 OK', [])\n    return [b'one']\n")
    body = f"""
    server = Granian("app:app", interface="wsgi", port=0, reload=True,
                     reload_paths=[{str(tmp_path)!r}], reload_tick=100,
                     reload_ignore_patterns=[r"\\.log$"], workers_lifetime=3600)
    """
    with Caller(tmp_path, body, cwd=str(tmp_path)) as c:
        c.start()
        assert httpx.get(c.url).text == "one"
        app.write_text("def app(e, s):\n    s('200 OK', [])\n    return [b'two']\n")
        c.wait_for(r"Started worker-1", 2)
        assert httpx.get(c.url).text == "two"
        assert c.stop() == 0


# -- serve(): return and exit codes ------------------------------------------

FAILURES = {      # what granc cannot do yet reaches it, and it says so
    "static mount missing": ("interface='wsgi', static_path_mount=[Path('/nonexistent-granc-dir')]",
                             "--static-path-mount: /nonexistent-granc-dir is not a directory"),
    "broken app": ("interface='wsgi', target='broken_app:app'", "no_such_module_here"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failure_is_systemexit(tmp_path, case):
    kw, message = FAILURES[case]
    body = f"""kw = dict({kw})
server = Granian(kw.pop("target", "wsgi_app:app"), port=0, **kw)
"""
    with Caller(tmp_path, body) as c:
        c.start(wait=False)
        code = c.wait()
        out = c.log()
    assert code != 0
    assert f"SYSTEMEXIT {code}" in out and message in out, out


# -- ConfigurationError before anything starts (in this process) -------------

@pytest.fixture
def no_granc(tmp_path, monkeypatch):
    """$GRANC names a program that leaves a mark: none may be left."""
    mark = tmp_path / "started"
    fake = tmp_path / "fake-granc"
    fake.write_text(f"#!/bin/sh\ntouch {mark}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GRANC", str(fake))
    yield
    assert not mark.exists(), "granc was started"


class Custom(Granian):
    def _init_shared_socket(self):
        pass


SERVE_ERRORS = [
    # Granian's own checks, by the same name
    (dict(interface="asgi", blocking_threads=2), "blocking_threads"),
    (dict(interface="asginl", blocking_threads="2"), "blocking_threads"),
    (dict(interface="wsgi", workers_lifetime=30), "workers_lifetime"),
    (dict(interface="wsgi", blocking_threads_idle_timeout=2), "blocking_threads_idle_timeout"),
    # what granc cannot do or take
    (dict(interface="wsgi", ssl_cert="CERT", ssl_key="KEY", ssl_protocol_min="tls1.3"),
     "ssl_protocol_min"),
    (dict(interface="wsgi", reload=True, reload_filter=type), "reload_filter"),
    (dict(interface="nope"), "interface"),
    (dict(interface="wsgi", http=3), "http"),
    (dict(interface="wsgi", log_dictconfig={"version": 1, "formatters": {
        "generic": {"()": logging.Formatter}, "access": {"()": logging.Formatter}}}),
     "log_dictconfig"),
]


@pytest.mark.parametrize("kw,name", SERVE_ERRORS, ids=[n for _, n in SERVE_ERRORS])
def test_serve_configuration_errors(no_granc, cert, kw, name):
    if "ssl_cert" in kw:
        kw = dict(kw, ssl_cert=cert[0], ssl_key=cert[1], ssl_key_password="secret")
    server = Granian("wsgi_app:app", **kw)          # the constructor accepts them
    with pytest.raises(ConfigurationError) as e:
        server.serve()
    assert isinstance(e.value, FatalError)
    assert str(e.value).split(":")[0] == name


def test_inexpressible_things_are_named(no_granc, tmp_path):
    with pytest.raises(ConfigurationError, match="^static_path$"):
        Granian("app:app", static_path_mount=[tmp_path, tmp_path], static_path_route=["/a"])
    with pytest.raises(ConfigurationError, match="^target: "):
        Granian(lambda e, s: [])
    with pytest.raises(ConfigurationError, match="^target_loader: "):
        Granian("app:app", interface="wsgi").serve(target_loader=lambda t: None)
    with pytest.raises(ConfigurationError, match="^_init_shared_socket: "):
        Custom("app:app", interface="wsgi").serve()
    from granian import loops
    loops.register("pyapi-test-loop")(lambda: None)
    with pytest.raises(ConfigurationError, match="^loop: "):
        Granian("app:app", interface="asgi", loop="pyapi-test-loop").serve()
    with pytest.raises(ConfigurationError, match="^port: "):
        Granian("app:app", port="eighty")
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(os.getppid()))          # a live process that is not us
    with pytest.raises(PidFileError):
        Granian("app:app", interface="wsgi", pid_file=pid_file).serve()
    with pytest.raises(ImportError, match="embed"):
        import granian.server.embed  # noqa: F401


# -- the granian command and python -m granian ---------------------------------

@pytest.mark.parametrize("how", ["python -m granian", "granian.cli.entrypoint"])
def test_command(tmp_path, how):
    """granc with the same arguments; as a command line, GRANIAN_* count."""
    if how == "python -m granian":
        script = "import runpy\nrunpy.run_module('granian', run_name='__main__')\n"
    else:
        script = "from granian.cli import entrypoint\nentrypoint()\n"
    with Caller(tmp_path, None, script=script, env={"GRANIAN_WORKERS": "2"}) as c:
        c.start(["--interface", "wsgi", "--port", "0", "wsgi_app:app"], workers=2)
        assert c.granc_pids()[0] == c.proc.pid       # exec'd: granc is the caller
        assert httpx.get(c.url + "/info").status_code == 200
        assert c.stop() == 0


def test_install_python(tmp_path):
    """make install-python into a virtualenv: metadata, the granian command
    finding granc where make install put it; a real Granian is refused."""
    venv, prefix = tmp_path / "venv", tmp_path / "prefix"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (prefix / "bin").mkdir(parents=True)
    os.symlink(BIN, prefix / "bin" / "granc")
    py = str(venv / "bin" / "python")
    make = ["make", "-s", "-C", ROOT, "install-python", f"PYTHON={py}", f"PREFIX={prefix}"]
    r = subprocess.run(make, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([py, "-c", "import importlib.metadata as m, granian; "
                        "print(m.version('granian'), granian.__version__)"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.stdout.split() == ["2.8.1", "2.8.1"], r.stderr
    r = subprocess.run([str(venv / "bin" / "granian"), "--version"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "granian 2.8.1 compatible" in r.stdout, r.stderr
    # a real Granian: its Rust extension and pip's metadata
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "granian" / "_granian.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    r = subprocess.run(make, capture_output=True, text=True)
    assert r.returncode != 0 and "a real Granian is installed" in r.stderr


def test_modules_callers_import():
    """Granian's names and values, and its click types (python3-click)."""
    import click
    from granian import __version__, cli, constants, http, log
    assert __version__ == "2.8.1"
    assert constants.Interfaces.ASGINL.value == "asginl" and str(constants.HTTPModes.http2) == "2"
    assert constants.SSLProtocols.tls12 == "tls1.2" and {constants.Loops.uvloop: 1}["uvloop"]
    assert str(log.LogLevels.info) == "LogLevels.info"      # why the shim reads .value
    assert log.log_levels_map["warn"] == logging.WARNING
    assert log.LOGGING_CONFIG["loggers"]["_granian"]["handlers"] == ["console"]
    assert http.HTTP1Settings().max_buffer_size == 417_792
    assert http.HTTP2Settings().keep_alive_interval is None
    assert cli.Server is Granian and callable(cli.entrypoint)
    d = cli.Duration(60)
    assert d.convert("1h30m", None, None) == 5400 and d.convert("90", None, None) == 90
    with pytest.raises(click.BadParameter):
        d.convert("30s", None, None)
    assert cli.EnumType(constants.Loops).convert("UVLOOP", None, None) is constants.Loops.uvloop
    assert cli.OctalIntType().convert("0660", None, None) == 0o660


def test_command_refuses_a_replaced_server_class(monkeypatch, capsys):
    """litestar-granian 0.16 and PostHog patch granian.cli.Server with a
    subclass: granc cannot run it, and says so instead of ignoring it."""
    from granian import cli
    monkeypatch.setattr(cli, "Server", Custom)
    with pytest.raises(SystemExit) as e:
        cli.entrypoint()
    assert e.value.code == 1
    assert "granian.cli.Server was replaced by Custom" in capsys.readouterr().err
