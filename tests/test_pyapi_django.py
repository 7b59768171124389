"""A Django project driven the way django-prodserver drives Granian:
`python manage.py prodserver web`, PRODUCTION_PROCESSES with string ARGS,
Granian(target=..., interface=Interfaces.ASGI|WSGI, **kwargs).serve().
tests/apps/prodserver stands in for django-prodserver (not in Debian)."""
import json
import os
import signal
import socket

import httpx
import pytest

from conftest import APPS
from test_pyapi import Caller, free_port

BACKENDS = {"asgi": "prodserver.backends.GranianASGIServer",
            "wsgi": "prodserver.backends.GranianWSGIServer"}


def prodserver(tmp_path, iface, args):
    script = open(os.path.join(APPS, "manage.py")).read()
    env = {"PRODSERVER_BACKEND": BACKENDS[iface], "PRODSERVER_ARGS": json.dumps(args),
           "DJANGO_SETTINGS_MODULE": "prodserver.settings"}
    c = Caller(tmp_path, None, script=script, env=env)
    c.path = os.path.join(APPS, "manage.py")        # run the project's own manage.py
    return c


def get_and_post(url):
    r = httpx.get(url + "/?name=granc")
    assert r.status_code == 200 and r.text.startswith("<h1>Hello granc</h1>"), r.text
    token = "z" * 32
    r = httpx.post(url + "/form", data={"a": "1", "csrfmiddlewaretoken": token},
                   cookies={"csrftoken": token})
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"a": "1", "csrfmiddlewaretoken": token}
    assert httpx.post(url + "/form", data={"a": "1"}).status_code == 403


@pytest.mark.parametrize("iface,args", [
    ("asgi", {"address": "127.0.0.1", "workers": "2", "blocking_threads": "1",
              "log-access": "true", "http": "1", "websockets": "false", "log_level": "info"}),
    ("wsgi", {"host": "127.0.0.1", "workers": "1", "threads": "4", "log_access": "yes",
              "backlog": "256", "runtime-threads": "2"}),
], ids=["asgi", "wsgi"])
def test_prodserver(tmp_path, iface, args):
    args = dict(args, port="0")           # granc logs the port it got
    workers = int(args["workers"])
    with prodserver(tmp_path, iface, args) as c:
        c.start(["prodserver", "web"], workers=workers)
        get_and_post(c.url)
        assert c.stop(signal.SIGTERM) == 0
        out = c.log()
    assert f"Spawning worker-{workers}" in out and f"worker-{workers + 1}" not in out
    assert '"POST /form HTTP/1.1" 200' in out, out     # log_access reached granc


def test_prodserver_asgi_blocking_threads_is_refused(tmp_path):
    """The Granian page's example, blocking_threads "2" on ASGI: Granian
    raises ConfigurationError("blocking_threads") before binding; so do we."""
    port = free_port()
    args = {"address": "127.0.0.1", "port": str(port), "blocking_threads": "2"}
    with prodserver(tmp_path, "asgi", args) as c:
        c.start(["prodserver", "web"], wait=False)
        assert c.wait() != 0
        out = c.log()
    assert "granian.errors.ConfigurationError: blocking_threads" in out, out
    assert "Starting granc" not in out
    with socket.socket() as s:              # nothing was bound
        s.bind(("127.0.0.1", port))
