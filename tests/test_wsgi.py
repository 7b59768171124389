"""PEP 3333 behaviour against the real binary, with httpx and raw sockets."""
import hashlib
import json
import os
import warnings

import httpx
import pytest

from conftest import Server, read_response


@pytest.fixture
def srv(wsgi_server):
    return wsgi_server("wsgi_app:app", "--blocking-threads", "4")


@pytest.fixture(params=["1", "4"])
def any_threads(request, wsgi_server):
    """The same behaviour inline (--blocking-threads 1) and with a pool."""
    return wsgi_server("wsgi_app:app", "--blocking-threads", request.param)


def test_environ(any_threads):
    r = httpx.get(any_threads.url + "/info?a=1&b=%20x", headers={"X-Thing": "v", "Cookie": "c=1"})
    assert r.status_code == 200
    e = r.json()
    assert e["REQUEST_METHOD"] == "GET"
    assert e["PATH_INFO"] == "/info"
    assert e["QUERY_STRING"] == "a=1&b=%20x"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert e["SERVER_PORT"] == str(any_threads.port)
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert int(e["REMOTE_PORT"]) > 0
    assert e["SCRIPT_NAME"] == ""
    assert e["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert e["wsgi.url_scheme"] == "http"
    assert e["wsgi.version"] == [1, 0]
    assert e["wsgi.multiprocess"] is False
    assert e["wsgi.run_once"] is False
    assert e["wsgi.input_terminated"] is True
    assert e["_file_wrapper"] is True
    assert e["HTTP_X_THING"] == "v"
    assert e["HTTP_COOKIE"] == "c=1"
    assert e["HTTP_HOST"] == f"127.0.0.1:{any_threads.port}"
    assert "CONTENT_LENGTH" not in e and "CONTENT_TYPE" not in e
    # Granian's environ starts from the process environment
    assert e["PATH"] == os.environ["PATH"]


def test_environ_body_keys_and_repeats(srv):
    s = srv.connect()
    s.sendall(b"POST /info HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 3\r\nX-Rep: a\r\nX-Rep: b\r\nCookie: a=1\r\nCookie: b=2\r\n"
              b"X_Spoof: no\r\n\r\nabc")
    status, _, body, _ = read_response(s)
    s.close()
    e = json.loads(body)
    assert status == 200
    assert e["CONTENT_TYPE"] == "text/plain"
    assert e["CONTENT_LENGTH"] == "3"
    assert e["HTTP_X_REP"] == "a,b"
    assert e["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOF" not in e          # underscores would spoof dashes
    assert "HTTP_CONTENT_TYPE" not in e


def test_httpoxy_not_leaked(wsgi_server):
    s = wsgi_server("wsgi_app:app", env={"HTTP_PROXY": "http://evil", "MY_VAR": "1"})
    e = httpx.get(s.url + "/info").json()
    assert "HTTP_PROXY" not in e
    assert e["MY_VAR"] == "1"


def test_path_decoding_and_prefix(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--url-path-prefix", "/pre")
    sock = s.connect()
    sock.sendall(b"GET /pre/info%20x%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(sock)
    assert status == 404
    assert body == "not found: /info xé".encode("utf-8")   # latin-1 str of the bytes
    sock.sendall(b"GET /pre/info HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(sock)
    e = json.loads(body)
    assert e["SCRIPT_NAME"] == "/pre" and e["PATH_INFO"] == "/info"
    sock.close()


def test_echo(any_threads):
    data = os.urandom(300_000)
    r = httpx.post(any_threads.url + "/echo", content=data)
    assert r.status_code == 200 and r.content == data


def test_chunked_upload_digest(srv):
    def gen():
        for i in range(64):
            yield bytes([i]) * 10000
    r = httpx.post(srv.url + "/digest", content=gen())
    expect = hashlib.sha256(b"".join(bytes([i]) * 10000 for i in range(64))).hexdigest()
    assert r.json() == {"length": 640000, "sha256": expect}


@pytest.mark.parametrize("mode", ["iter", "readline", "readlines", "readn"])
def test_input_methods(srv, mode):
    data = b"one\ntwo\n\nthree"
    r = httpx.post(srv.url + "/lines?mode=" + mode, content=data)
    if mode == "readn":
        assert "".join(r.json()) == data.decode()
        assert all(len(x) <= 3 for x in r.json())
    else:
        assert r.json() == ["one\n", "two\n", "\n", "three"]


def test_generator_streamed_chunked(srv):
    with httpx.stream("GET", srv.url + "/stream?n=5&size=3") as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in r.headers
        assert r.read() == b"000111222333444"


def test_close_always_called(srv):
    httpx.get(srv.url + "/closing")
    r = httpx.get(srv.url + "/closing")
    assert r.content[:2] == b"ab" and int(r.content[2:]) >= 1


def test_write_callable(srv):
    r = httpx.get(srv.url + "/write")
    assert r.status_code == 201
    assert r.content == b"written-returned"


def test_reason_phrase_kept(srv):
    s = srv.connect()
    s.sendall(b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 299 Very Custom\r\n")


def test_exc_info_replaces_status(srv):
    r = httpx.get(srv.url + "/exc_info")
    assert r.status_code == 503 and r.content == b"replaced"


def test_exception_gives_500_and_traceback(srv):
    r = httpx.get(srv.url + "/err_app")
    assert r.status_code == 500
    assert r.content == b""
    r2 = httpx.get(srv.url + "/info")       # the worker lives on
    assert r2.status_code == 200
    log = srv.log()
    assert "Application callable raised an exception" in log
    assert "RuntimeError: boom from the app" in log


def test_exception_mid_stream_aborts(srv):
    s = srv.connect()
    s.sendall(b"GET /err_iter HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert b"first" in data
    assert not data.endswith(b"0\r\n\r\n")     # never a clean end of a broken body


def test_file_wrapper_sendfile(srv, tmp_path):
    p = tmp_path / "blob.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    p.write_bytes(data)
    r = httpx.get(srv.url + "/filewrapper", params={"path": str(p)})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.content == data


def test_head_request(srv):
    s = srv.connect()
    s.sendall(b"HEAD /bigresp?n=1000 HTTP/1.1\r\nHost: x\r\n\r\nGET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body, rest = read_response(s, head_req=True)
    assert status == 200 and headers["content-length"] == "1000"
    # no body bytes: the next thing on the wire is the second response
    status, _, body, _ = read_response(s, rest)
    assert status == 299 and body == b"ok"
    s.close()


def test_bad_header_from_app_is_500(srv):
    r = httpx.get(srv.url + "/bad_header")
    assert r.status_code == 500
    assert "x-injected" not in r.headers


@pytest.mark.parametrize("nargs", [1, 4])
def test_start_response_argument_count_is_500(srv, nargs):
    assert httpx.get(srv.url + f"/bad_start?{nargs}").status_code == 500
    assert f"start_response() takes 2 or 3 arguments ({nargs} given)" in srv.log()
    assert httpx.get(srv.url + "/bad_start?2").status_code == 200


def test_short_body_aborts_connection(srv):
    s = srv.connect()
    s.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"12345")


def test_validator_no_warnings(wsgi_server):
    s = wsgi_server("validated:app")
    r = httpx.post(s.url + "/", content=b"x" * 1000)
    assert r.status_code == 200, s.log()
    assert r.content == b"validated 1000"
    assert "Warning" not in s.log() and "AssertionError" not in s.log(), s.log()


def test_thread_pool_is_used(wsgi_server):
    s = wsgi_server("wsgi_app:app", "--blocking-threads", "8")
    names = {httpx.get(s.url + "/info").json()["_thread"] for _ in range(3)}
    assert all(n != "MainThread" for n in names)
    s1 = wsgi_server("wsgi_app:app", "--blocking-threads", "1")
    assert httpx.get(s1.url + "/info").json()["_thread"] == "MainThread"
