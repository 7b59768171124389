"""Master and workers: targets, sockets, signals, options from argv and env."""
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import httpx
import pytest

from conftest import APPS, BIN, Server, read_response


def run(args, env=None, cwd=APPS, timeout=30):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
    e.update(env or {})
    return subprocess.run([BIN] + args, cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


# ---- targets ------------------------------------------------------------

@pytest.mark.parametrize("target,extra", [
    ("wsgi_app:app", []),
    ("wsgi_app:Holder.inner", []),          # dotted attribute
    ("wsgi_app:make_app", ["--factory"]),
    ("wsgi_app.py:app", []),                # a file path
    ("pkg.mod", []),                        # default attribute "app"
])
def test_targets(wsgi_server, target, extra):
    s = wsgi_server(target, *extra)
    assert httpx.get(s.url + "/info").status_code in (200, 404)


def test_file_path_target_elsewhere(wsgi_server, tmp_path):
    # a file path works from any working directory, as in Granian
    s = wsgi_server(os.path.join(APPS, "pkg", "mod.py") + ":app", cwd=str(tmp_path))
    assert httpx.get(s.url + "/x").text == "pkg.mod"


def test_working_dir(wsgi_server, tmp_path):
    s = wsgi_server("wsgi_app:app", "--working-dir", APPS, cwd=str(tmp_path))
    e = httpx.get(s.url + "/info").json()
    assert e["_sys_path0"] == APPS


def test_import_failure_exits_1_without_loop():
    r = run(["--interface", "wsgi", "--port", "0", "--workers", "2", "broken_app:app"])
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "ModuleNotFoundError" in out and "no_such_module_here" in out
    # each worker tries once; nobody respawns them
    assert len(re.findall(r"Spawning worker", out)) == 2


def test_missing_attribute_exits_1():
    r = run(["--interface", "wsgi", "--port", "0", "wsgi_app:nope"])
    assert r.returncode == 1
    assert "AttributeError" in r.stdout + r.stderr


# ---- configuration --------------------------------------------------------

def test_version_and_help():
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("granc ")
    r = run(["--help"])
    assert r.returncode == 0 and "--http1-buffer-size" in r.stdout
    assert "GRANIAN_BLOCKING_THREADS" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--workers", "0"], "--workers"),
    (["--port", "70000"], "--port"),
    (["--backlog", "12"], "--backlog"),
    (["--http1-header-read-timeout", "0"], "--http1-header-read-timeout"),
    (["--blocking-threads-idle-timeout", "1h"], "--blocking-threads-idle-timeout"),
    (["--interface", "nope"], "--interface"),
    (["--bogus"], "--bogus"),
    (["--http2-max-frame-size", "1024"], "--http2-max-frame-size"),
    (["--ssl-certificate", "/x"], "--ssl-certificate"),
    (["--loop", "rloop"], "--loop"),
])
def test_config_errors_one_line(args, needle):
    full = ["--interface", "wsgi"] + args + ["wsgi_app:app"]
    if "--interface" in args:
        full = args + ["wsgi_app:app"]
    r = run(full)
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Listening" not in r.stdout


def test_options_from_environment(wsgi_server):
    s = wsgi_server("wsgi_app:app", env={
        "GRANIAN_URL_PATH_PREFIX": "/envpre",
        "GRANIAN_BLOCKING_THREADS": "3",
        "GRANIAN_LOG_ACCESS_ENABLED": "yes",
        "GRANIAN_HTTP1_KEEP_ALIVE": "off",
        "GRANIAN_SOMETHING_UNKNOWN": "1",
    })
    r = httpx.get(s.url + "/envpre/info")
    e = r.json()
    assert e["SCRIPT_NAME"] == "/envpre" and e["PATH_INFO"] == "/info"
    assert e["wsgi.multithread"] is True
    assert r.headers["connection"] == "close"
    # the access line is written once the response has left: wait for it
    deadline = time.time() + 5
    while '"GET /envpre/info HTTP/1.1" 200' not in s.log() and time.time() < deadline:
        time.sleep(0.05)
    log = s.log()
    assert "GRANIAN_SOMETHING_UNKNOWN" in log
    assert '"GET /envpre/info HTTP/1.1" 200' in log


def test_argv_beats_environment(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--url-path-prefix", "/argv",
                    env={"GRANIAN_URL_PATH_PREFIX": "/env"})
    assert httpx.get(s.url + "/argv/info").json()["SCRIPT_NAME"] == "/argv"


def test_env_interface_and_bad_env_value():
    r = run(["--port", "0", "wsgi_app:app"], env={"GRANIAN_WORKERS": "zero",
                                                  "GRANIAN_INTERFACE": "wsgi"})
    assert r.returncode == 1 and "GRANIAN_WORKERS" in r.stderr


def test_access_log_format(wsgi_server):
    fmt = '%(addr)s|%(method)s|%(path)s|%(query_string)s|%(status)d|%(protocol)s|%(scheme)s|%({user-agent}i)s|%(dt_ms).1f'
    s = wsgi_server("wsgi_app:app", "--access-log", "--access-log-fmt", fmt)
    httpx.get(s.url + "/info?q=1", headers={"User-Agent": 'ua "quoted"'})
    deadline = time.time() + 5
    while "|GET|" not in s.log() and time.time() < deadline:
        time.sleep(0.05)
    line = [l for l in s.log().splitlines() if "|GET|" in l][0]
    parts = line.split("|")
    assert parts[:8] == ["127.0.0.1", "GET", "/info", "q=1", "200", "HTTP/1.1", "http",
                         'ua \\"quoted\\"']
    float(parts[8])


def test_no_log_and_log_level(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--log-level", "debug")
    assert "[INFO] Started worker-1" in s.log()
    r = run(["--interface", "wsgi", "--no-log", "--port", "0", "broken_app:app"])
    assert "Spawning" not in r.stdout


# ---- sockets --------------------------------------------------------------

def test_uds_permissions_and_unlink(tmp_path):
    path = str(tmp_path / "g.sock")
    s = Server("wsgi_app:app", "--uds-permissions", "0660", uds=path).start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as c:
            e = c.get("http://granc/info").json()
        assert e["PATH_INFO"] == "/info"
        assert e["SERVER_NAME"] == path
    finally:
        assert s.stop() == 0
    assert not os.path.exists(path)


@pytest.mark.parametrize("value,mode,warn", [
    ("666", 0o1232, "write 0666 for rw-rw-rw-"),   # decimal, as Granian reads it
    ("660", 0o1224, "write 0660 for rw-rw----"),
    ("1777", 0o3361, "write 01777 for rwxrwxrwt"),
    ("0666", 0o666, None), ("0o640", 0o640, None),
    ("438", 0o666, None),                           # 8: no octal reading to warn of
])
@pytest.mark.parametrize("via", ["argv", "env"])
def test_uds_permissions_decimal_warning(tmp_path, value, mode, warn, via):
    """Granian's reading is kept (no leading 0: decimal), but a value that
    looks like octal digits gets one warning naming the mode that results."""
    path = str(tmp_path / "g.sock")
    args, env = (["--uds-permissions", value], None) if via == "argv" else \
        ([], {"GRANIAN_UDS_PERMISSIONS": value})
    s = Server("wsgi_app:app", *args, uds=path, env=env).start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
    finally:
        assert s.stop() == 0
    lines = [l for l in s.log().splitlines() if "is decimal" in l]
    if warn is None:
        assert lines == []
    else:
        name = "--uds-permissions" if via == "argv" else "GRANIAN_UDS_PERMISSIONS"
        assert lines == [f"[WARNING] {name} {value} is decimal (as Granian reads it): "
                         f"the socket's mode is 0{mode:o} ({stat.filemode(mode)[1:]}); {warn}"]


def test_localhost_host_name(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--host", "localhost")
    assert httpx.get(s.url + "/info").status_code == 200


def test_two_workers(wsgi_server):
    s = wsgi_server("wsgi_app:app", workers=2)
    pids = set()
    for _ in range(60):
        with httpx.Client() as c:        # new connections spread over workers
            pids.add(c.get(s.url + "/info").json()["_pid"])
        if len(pids) == 2:
            break
    assert pids <= set(s.worker_pids())
    assert len(s.worker_pids()) == 2


# ---- signals ----------------------------------------------------------------

def test_sigterm_finishes_inflight_request(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "2")
    result = {}

    def slow():
        result["r"] = httpx.get(s.url + "/slow?t=1.5", timeout=20)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    idle = s.connect()                    # an idle keep-alive connection
    s.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert result["r"].status_code == 200 and result["r"].content == b"slow done"
    assert s.proc.wait(20) == 0
    assert idle.recv(10) == b""          # closed, not left hanging
    assert "Shutting down" in s.log()


def test_sigint_also_stops(wsgi_server):
    s = wsgi_server("wsgi_app:app")
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(20) == 0


def test_sighup_rolling_restart(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--respawn-interval", "0.2", workers=2)
    before = set(s.worker_pids())
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while len(s.worker_pids()) < 4 and time.time() < deadline:
        assert httpx.get(s.url + "/info").status_code == 200
        time.sleep(0.1)
    after = set(s.worker_pids()) - before
    assert len(after) == 2
    time.sleep(0.5)
    for _ in range(10):
        assert httpx.get(s.url + "/info").json()["_pid"] in after
    assert s.proc.poll() is None


def test_worker_death_stops_server(wsgi_server):
    s = wsgi_server("wsgi_app:app")
    with pytest.raises(httpx.HTTPError):
        httpx.get(s.url + "/exit")
    assert s.proc.wait(20) == 1


def test_pid_file(tmp_path, wsgi_server):
    pf = tmp_path / "granc.pid"
    s = wsgi_server("wsgi_app:app", "--pid-file", str(pf))
    assert int(pf.read_text().strip()) == s.proc.pid
    r = run(["--interface", "wsgi", "--port", "0", "--pid-file", str(pf), "wsgi_app:app"])
    assert r.returncode == 1 and "pid" in r.stderr.lower()
    s.stop()
    assert not pf.exists()


def _threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"Threads:\s+(\d+)", f.read()).group(1))


@pytest.mark.slow
def test_blocking_threads_grow_on_demand_and_are_reaped(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "6",
                    "--blocking-threads-idle-timeout", "5")
    (worker,) = s.worker_pids()
    idle = _threads(worker)
    ts = [threading.Thread(target=httpx.get, args=(s.url + "/slow?t=1",), kwargs={"timeout": 20})
          for _ in range(6)]
    for t in ts:
        t.start()
    busy = idle                 # the most threads seen while the requests ran
    while any(t.is_alive() for t in ts):
        busy = max(busy, _threads(worker))
        time.sleep(0.05)
    for t in ts:
        t.join()
    assert busy >= idle + 5, (idle, busy)   # one per request (one was waiting already)
    deadline = time.time() + 15
    while _threads(worker) > idle and time.time() < deadline:
        time.sleep(0.5)
    assert _threads(worker) == idle              # reaped after the idle timeout
    assert httpx.get(s.url + "/info").status_code == 200   # and started again on demand


def test_virtual_env_is_honoured(wsgi_server, tmp_path):
    """$VIRTUAL_ENV decides sys.prefix and site-packages, as `python` does."""
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "only_in_venv.py").write_text(
        "import sys\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('content-type', 'text/plain')])\n"
        "    return [sys.prefix.encode()]\n")
    s = wsgi_server("only_in_venv:app", env={"VIRTUAL_ENV": str(venv)})
    assert httpx.get(s.url + "/").text == str(venv)
    # without it, the module is not found
    r = run(["--interface", "wsgi", "--port", "0", "only_in_venv:app"])
    assert r.returncode == 1 and "ModuleNotFoundError" in r.stdout + r.stderr


# ---- worker lifecycle --------------------------------------------------------

def _wait_log(s, needle, timeout=30):
    deadline = time.time() + timeout
    while needle not in s.log() and time.time() < deadline:
        time.sleep(0.1)
    return needle in s.log()


def test_respawn_failed_workers(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--respawn-failed-workers")
    (first,) = s.worker_pids()
    with pytest.raises(httpx.HTTPError):
        httpx.get(s.url + "/exit")
    deadline = time.time() + 20
    while s.log().count("Started worker-1") < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(s.worker_pids()) == 2 and "Unexpected exit from worker-1" in s.log()
    r = httpx.get(s.url + "/info")
    assert r.status_code == 200 and r.json()["_pid"] == s.worker_pids()[1] != first
    assert s.proc.poll() is None


def test_crash_loop_stops_the_server(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--respawn-failed-workers")
    for _ in range(2):                       # the respawned worker dies at once too
        deadline = time.time() + 20
        while True:
            try:
                httpx.get(s.url + "/exit", timeout=5)
            except httpx.HTTPError:
                break
            assert time.time() < deadline
    assert s.proc.wait(20) == 1
    assert "Worker crash loop detected" in s.log()


def test_import_failure_is_not_respawned():
    r = run(["--interface", "wsgi", "--port", "0", "--respawn-failed-workers", "broken_app:app"])
    assert r.returncode == 1 and r.stdout.count("Spawning worker") == 1


def test_workers_max_rss_respawns_gracefully(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--workers-max-rss", "60", "--rss-sample-interval", "1",
                    "--respawn-interval", "0.2")
    (first,) = s.worker_pids()
    assert httpx.get(s.url + "/grow").text == "grown"
    assert _wait_log(s, "over the 60 MiB limit: respawning", 15), s.log()
    deadline = time.time() + 15
    while len(s.worker_pids()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    new = s.worker_pids()[1]
    deadline = time.time() + 15
    while time.time() < deadline:
        if httpx.get(s.url + "/info").json()["_pid"] == new:
            break
        time.sleep(0.1)
    assert httpx.get(s.url + "/info").json()["_pid"] == new != first
    assert s.proc.poll() is None


@pytest.mark.slow
def test_workers_lifetime(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--workers-lifetime", "60", "--respawn-interval", "0.2")
    (first,) = s.worker_pids()
    assert _wait_log(s, "lifetime expired, respawning", 75)
    deadline = time.time() + 15
    while len(s.worker_pids()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    assert httpx.get(s.url + "/info").json()["_pid"] == s.worker_pids()[1] != first


def test_env_files(wsgi_server, tmp_path):
    a, b = tmp_path / "a.env", tmp_path / "b.env"
    a.write_text("# a comment\nPLAIN=one\nexport EXPORTED=two\nSPACED = three  # trailing\n"
                 "DQ=\"line\\nbreak\"\nSQ='# not a comment'\nKEPT=from-file\n\nnot a line\n")
    b.write_text("SECOND=yes\n")
    s = wsgi_server("wsgi_app:app", "--env-files", str(a), "--env-files", str(b),
                    "--respawn-interval", "0.2", env={"KEPT": "from-env"})
    e = httpx.get(s.url + "/info").json()
    assert (e["PLAIN"], e["EXPORTED"], e["SPACED"]) == ("one", "two", "three")
    assert e["DQ"] == "line\nbreak" and e["SQ"] == "# not a comment"
    assert e["SECOND"] == "yes"
    assert e["KEPT"] == "from-env"                 # never overrides the environment
    # SIGHUP re-reads the files: a variable added since reaches the new workers
    b.write_text("SECOND=yes\nADDED=later\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while len(s.worker_pids()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    deadline = time.time() + 20
    while time.time() < deadline:
        if httpx.get(s.url + "/info").json().get("ADDED") == "later":
            break
        time.sleep(0.2)
    assert httpx.get(s.url + "/info").json().get("ADDED") == "later"


def test_env_files_missing_exits_1(tmp_path):
    r = run(["--interface", "wsgi", "--port", "0", "--env-files", str(tmp_path / "nope.env"),
             "wsgi_app:app"])
    assert r.returncode == 1 and "--env-files" in r.stderr and "Listening" not in r.stdout


def test_libpython_linked_as_python3_is(monkeypatch):
    # make links libpython the way the interpreter links it (Makefile,
    # tools/pylink.py) and says so in one line; STATIC_PYTHON forces either
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    # not the STATIC_PYTHON of a make that runs this suite
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "STATIC_PYTHON")}

    def dry(*args):
        return subprocess.run(["make", "-n", "-B", *args, "tests/granc-test"], cwd=root, env=env,
                              capture_output=True, text=True, check=True, timeout=120).stdout
    out = dry()
    cc = [x for x in out.splitlines() if "-o tests/granc-test" in x]
    # Debian's python3 has libpython linked in, not PIE: so has the test build
    assert "echo \"tests/granc-test: libpython linked in (libpython3.11.a, not PIE) as " \
           "/usr/bin/python3 has it; STATIC_PYTHON=0 links the shared" in out, out
    assert "-no-pie" in cc[-1] and "libpython3.11.a" in cc[-1] and "-lpython" not in cc[-1]
    shared = [x for x in dry("STATIC_PYTHON=0").splitlines() if "-o tests/granc-test" in x]
    assert "-lpython3.11" in shared[-1] and "-no-pie" not in shared[-1], shared
    forced = dry("STATIC_PYTHON=1")
    assert "libpython linked in (libpython3.11.a, not PIE): STATIC_PYTHON=1" in forced
    r = subprocess.run(["make", "-n", "STATIC_PYTHON=yes"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "STATIC_PYTHON is 1" in r.stderr


def test_static_libpython_build(monkeypatch):
    # tests/granc-test, as make builds granc for Debian's python3: no
    # libpython3.*.so among its libraries, and extension modules (uvloop,
    # _asyncio, _json) resolve their symbols against the libpython inside
    import conftest
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["make", "-s", "tests/granc-test"], cwd=root, check=True, timeout=300)
    static = os.path.join(root, "tests", "granc-test")
    libs = subprocess.run(["ldd", static], capture_output=True, text=True).stdout
    if "libpython" in libs:
        pytest.skip("tests/granc-test was linked with STATIC_PYTHON=0")
    assert "libc.so" in libs, libs
    monkeypatch.setattr(conftest, "BIN", static)
    for loop in ("uvloop", "asyncio"):
        with Server("asgi_app:app", "--loop", loop, interface="asgi") as s:
            e = httpx.get(s.url + "/info").json()
            assert e["task"] and e["loop"].startswith(loop), e
    with Server("wsgi_app:app", "--blocking-threads", "1") as s:
        assert httpx.get(s.url + "/info").status_code == 200
