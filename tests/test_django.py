"""A real Django project (Debian's python3-django) under --interface wsgi."""
import hashlib
import os

import httpx


def test_django_get_and_post(wsgi_server):
    s = wsgi_server("djsite.wsgi:application", "--blocking-threads", "4")
    r = httpx.get(s.url + "/?name=granc")
    assert r.status_code == 200
    assert r.text == "<h1>Hello granc</h1><p>/</p><p>3 items</p>"
    # CSRF-protected POST: a token from the cookie must round-trip
    r = httpx.post(s.url + "/form", data={"a": "1"})
    assert r.status_code == 403
    token = "x" * 32
    r = httpx.post(s.url + "/form", data={"a": "1", "b": "é", "csrfmiddlewaretoken": token},
                   cookies={"csrftoken": token})
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"a": "1", "b": "é", "csrfmiddlewaretoken": token}


def test_django_multipart_upload(wsgi_server):
    s = wsgi_server("djsite.wsgi:application")
    data = os.urandom(5 * 1024 * 1024)
    r = httpx.post(s.url + "/upload", files={"file": ("blob.bin", data)})
    assert r.status_code == 200
    assert r.json() == {"name": "blob.bin", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}


def test_django_url_prefix(wsgi_server):
    s = wsgi_server("djsite.wsgi:application", "--url-path-prefix", "/site")
    token = "y" * 32
    r = httpx.post(s.url + "/site/form", data={"csrfmiddlewaretoken": token},
                   cookies={"csrftoken": token})
    assert r.status_code == 200 and r.json()["script_name"] == "/site"
