"""--reload: Granian's dev auto-reload (watchfiles with its DefaultFilter).

Each test serves a WSGI app written into its own temporary directory and
watches that directory; it edits files there and looks at what is served
and logged.  Waits poll for the awaited state; only the "nothing happens"
checks wait a fixed time, as nothing else can show an absence.
"""
import os
import re
import subprocess
import time

import httpx

from conftest import BIN

APP = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{body!r}]
'''
QUIET_S = 1.5       # how long "no reload" is watched for


def write_app(path, body):
    # The bodies differ in length: a same-size rewrite within the same
    # second would let Python reuse the stale .pyc, whatever the server.
    with open(path / "app.py", "w") as f:
        f.write(APP.format(body=body.encode()))


def get_body(server):
    try:
        r = httpx.get(server.url + "/", timeout=2)
    except httpx.HTTPError:
        return None         # between the old worker and the new one
    return r.text if r.status_code == 200 else None


def wait_body(server, body, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_body(server) == body:
            return True
        time.sleep(0.05)
    return False


def wait_log(server, needle, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in server.log():
            return True
        time.sleep(0.05)
    return False


def start(wsgi_server, tmp_path, *args):
    write_app(tmp_path, "one")
    s = wsgi_server("app:app", "--reload", "--reload-paths", str(tmp_path), *args,
                    cwd=str(tmp_path))
    assert get_body(s) == "one"
    return s


def test_edit_reloads(wsgi_server, tmp_path):
    s = start(wsgi_server, tmp_path)
    write_app(tmp_path, "two!")
    assert wait_body(s, "two!"), s.log()
    out = s.log()
    assert out.count("Changes detected, reloading workers..") == 1, out
    assert f"Modified: {tmp_path}/app.py" in out, out
    # all workers stopped, then all spawned again
    assert out.index("Stopping worker-1") < out.rindex("Spawning worker-1")


def test_new_package_is_watched(wsgi_server, tmp_path):
    s = start(wsgi_server, tmp_path)
    (tmp_path / "lib").mkdir()
    with open(tmp_path / "lib" / "helper.py", "w") as f:
        f.write("BODY = b'from helper'\n")
    with open(tmp_path / "app.py", "w") as f:
        f.write("from lib.helper import BODY\n" + APP.format(body=b"x").replace("b'x'", "BODY"))
    assert wait_body(s, "from helper"), s.log()
    # the directory created meanwhile is watched too
    with open(tmp_path / "lib" / "helper.py", "w") as f:
        f.write("BODY = b'helper, edited'\n")
    assert wait_body(s, "helper, edited"), s.log()
    assert f"Modified: {tmp_path}/lib/helper.py" in s.log()


def test_ignored_files_do_not_reload(wsgi_server, tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "static").mkdir()
    s = start(wsgi_server, tmp_path, "--reload-ignore-patterns", r"\.txt$",
              "--reload-ignore-dirs", "build",
              "--reload-ignore-paths", str(tmp_path / "static"))
    (tmp_path / "__pycache__").mkdir(exist_ok=True)
    for name in ("__pycache__/other.cpython-311.pyc", "stale.pyc", ".app.py.swp",
                 "app.py~", "notes.txt", "build/gen.py", "static/site.py"):
        with open(tmp_path / name, "w") as f:
            f.write("x = 1\n")
    time.sleep(QUIET_S)
    assert "Changes detected" not in s.log(), s.log()
    assert s.proc.poll() is None
    # the watcher is alive: a file that counts still reloads
    write_app(tmp_path, "after")
    assert wait_body(s, "after"), s.log()
    assert s.log().count("Changes detected") == 1


def test_burst_is_one_reload(wsgi_server, tmp_path):
    s = start(wsgi_server, tmp_path)
    for i in range(5):
        write_app(tmp_path, "v" * (i + 2))
        time.sleep(0.01)
    assert wait_body(s, "v" * 6), s.log()
    time.sleep(0.5)
    assert s.log().count("Changes detected") == 1, s.log()


def test_syntax_error_with_ignore_worker_failure(wsgi_server, tmp_path):
    s = start(wsgi_server, tmp_path, "--reload-ignore-worker-failure")
    with open(tmp_path / "app.py", "w") as f:
        f.write("def app(:\n")
    assert wait_log(s, "SyntaxError"), s.log()
    time.sleep(1)
    assert s.proc.poll() is None, s.log()
    write_app(tmp_path, "fixed")
    assert wait_body(s, "fixed", timeout=10), s.log()


def test_syntax_error_exits_1(wsgi_server, tmp_path):
    s = start(wsgi_server, tmp_path)
    with open(tmp_path / "app.py", "w") as f:
        f.write("def app(:\n")
    try:
        rc = s.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    assert rc == 1, s.log()
    assert "SyntaxError" in s.log()


def run(args, env=None, cwd=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
    e.update(env or {})
    return subprocess.run([BIN, "--interface", "wsgi", "--port", "0"] + args, cwd=cwd,
                          env=e, capture_output=True, text=True, timeout=30)


def test_missing_path_fails(tmp_path):
    r = run(["--reload", "--reload-paths", str(tmp_path / "nope"), "app:app"], cwd=tmp_path)
    assert r.returncode == 1
    assert re.search(r"--reload-paths: \S*/nope: No such file or directory",
                     r.stderr + r.stdout), r.stderr + r.stdout
    r = run(["--reload", "app:app"], cwd=tmp_path,
            env={"GRANIAN_RELOAD_PATHS": str(tmp_path / "nope")})
    assert r.returncode == 1
    assert "GRANIAN_RELOAD_PATHS: " in r.stderr + r.stdout, r.stderr + r.stdout


def test_bad_pattern_fails(tmp_path):
    write_app(tmp_path, "one")
    r = run(["--reload", "--reload-ignore-patterns", "(", "app:app"], cwd=tmp_path)
    assert r.returncode == 1
    err = r.stderr.strip()
    assert err.startswith("granc: --reload-ignore-patterns: '(': ") and "\n" not in err, err
