"""The apps in examples/, started exactly as examples/README.md says.

Each test takes its granc command line from examples/README.md (so the
README cannot go stale), runs it from the repository root with --port 0
instead of the default 8000, and calls every route with real clients:
httpx for HTTP, the `websockets` library for WebSockets.
"""
import asyncio
import importlib.util
import json
import os
import shlex

import httpx
import pytest
import websockets

from conftest import ROOT, read_response

EXAMPLES = os.path.join(ROOT, "examples")


def readme_command(readme, needle):
    """The `./granc ...` line of `readme` that contains `needle`, split into
    (interface, other options, target)."""
    with open(readme) as f:
        found = [l for l in f if "./granc " in l and needle in l]
    assert found, f"no ./granc command with {needle!r} in {readme}"
    # the top README chains it after the build: "... && make && ./granc ..."
    argv = shlex.split(found[0].split("&&")[-1].split("#")[0])
    assert argv[0] == "./granc", found[0]
    argv = argv[1:]
    i = argv.index("--interface")
    interface = argv[i + 1]
    del argv[i:i + 2]
    return interface, argv[:-1], argv[-1]


@pytest.fixture
def example(wsgi_server):
    """example('examples/x.py') starts the README's command for it."""
    def start(needle):
        interface, args, target = readme_command(os.path.join(EXAMPLES, "README.md"), needle)
        return wsgi_server(target, *args, interface=interface, cwd=ROOT)
    return start


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def ws_url(server, path):
    return f"ws://127.0.0.1:{server.port}{path}"


# -- hello.py ----------------------------------------------------------------

def test_hello_top_readme_command(wsgi_server):
    # the first command of the top-level README
    interface, args, target = readme_command(os.path.join(ROOT, "README.md"),
                                             "examples/hello.py")
    assert (interface, args, target) == ("wsgi", [], "examples/hello.py")
    s = wsgi_server(target, *args, interface=interface, cwd=ROOT)
    r = httpx.get(s.url + "/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"
    assert r.text == "Hello, world!"


def test_hello(example):
    s = example("examples/hello.py")
    r = httpx.get(s.url + "/anything")
    assert r.status_code == 200 and r.text == "Hello, world!"


# -- wsgi_app.py -------------------------------------------------------------

def test_wsgi_app_routes(example):
    s = example("examples/wsgi_app.py")
    with httpx.Client(base_url=s.url) as c:
        r = c.get("/")
        assert r.status_code == 200
        assert r.text == "Hello from a plain WSGI app!\n"

        r = c.get("/env")
        assert r.status_code == 200
        assert r.json() == {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
                            "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "",
                            "PATH_INFO": "/env"}

        with c.stream("GET", "/stream") as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            body = "".join(r.iter_text())
        assert body.splitlines() == [f"line {i}" for i in range(1, 6)]

        r = c.get("/echo")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        r = c.get("/nope")
        assert r.status_code == 404


def test_wsgi_app_echo(example):
    s = example("examples/wsgi_app.py")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        # content-length in, content-length out
        r = c.post("/echo", content=data, headers={"content-type": "application/x-blob"})
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(data))
        assert r.headers["content-type"] == "application/x-blob"
        assert r.content == data

        # chunked in (httpx sends a generator that way), chunked out
        def gen():
            for i in range(0, len(data), 100_000):
                yield data[i:i + 100_000]
        r = c.post("/echo", content=gen())
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.content == data

        r = c.post("/echo", content=b"")
        assert r.status_code == 200 and r.content == b""


def test_wsgi_app_echo_streams(example):
    """/echo sends back the first chunk it reads (CHUNK bytes: wsgi.input's
    read(n) waits for n bytes, like a file) before the client has sent the
    rest of the body: the body is never held whole."""
    spec = importlib.util.spec_from_file_location("ex_wsgi_app",
                                                  os.path.join(EXAMPLES, "wsgi_app.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    first, rest = os.urandom(mod.CHUNK), os.urandom(1000)
    s = example("examples/wsgi_app.py")
    sock = s.connect()
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n"
                     b"\r\n%x\r\n%s\r\n" % (len(first), first))
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) < len(first):
            b = sock.recv(65536)
            assert b, buf
            buf += b
        assert buf.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        status, headers, body, _ = read_response(sock, buf)
        assert status == 200 and body == first + rest
    finally:
        sock.close()


# -- asgi_app.py -------------------------------------------------------------

def test_asgi_app_http_and_lifespan(example):
    s = example("examples/asgi_app.py")
    assert "asgi_app: startup complete" in s.log()
    with httpx.Client(base_url=s.url) as c:
        r = c.get("/")
        assert r.status_code == 200
        assert r.text == "Hello from a plain ASGI app! ready=True\n"
        assert c.get("/nope").status_code == 404

        with c.stream("GET", "/sse") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            assert r.headers["cache-control"] == "no-cache"
            stream = "".join(r.iter_text())
    # events are separated by a blank line; each line is "field: value"
    events = [dict(line.split(": ", 1) for line in block.split("\n"))
              for block in stream.split("\n\n")[:-1]]
    assert events == [{"id": str(i), "event": "tick", "data": json.dumps({"n": i})}
                      for i in (1, 2, 3)]
    assert s.stop() == 0
    assert "asgi_app: shutdown complete" in s.log()


def test_asgi_app_websocket(example):
    s = example("examples/asgi_app.py")

    async def go():
        async with websockets.connect(ws_url(s, "/ws")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            await ws.send("é" * 70000)  # larger than one frame header's 16-bit length
            assert await ws.recv() == "é" * 70000
            await ws.send("bye")
            assert await ws.recv() == "bye!"
            await ws.wait_closed()
            assert ws.close_code == 1000
        # an unknown path is refused at the handshake
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(ws_url(s, "/nope")):
                pass
        assert e.value.status_code == 403
    run(go())


# -- django_project/ ---------------------------------------------------------

@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_django_project(example, interface):
    s = example(f"mysite.{interface}:application")
    assert s.interface == interface
    with httpx.Client(base_url=s.url) as c:
        r = c.get("/", params={"name": "granc"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"message": "Hello, granc", "method": "GET", "path": "/",
                            "interface": interface}
        assert c.get("/").json()["message"] == "Hello, world"
        assert c.get("/nope").status_code == 404
        # DEBUG is off: host names outside ALLOWED_HOSTS are refused
        assert c.get("/", headers={"host": "evil.example"}).status_code == 400
        assert c.get("/", headers={"host": "localhost"}).status_code == 200


# -- fastapi_app.py ----------------------------------------------------------

def test_fastapi_app_http(example):
    s = example("examples/fastapi_app.py")
    with httpx.Client(base_url=s.url) as c:
        r = c.get("/hello/granc", params={"excited": "true"})
        assert r.status_code == 200 and r.json() == {"message": "Hello, granc!"}
        assert c.get("/hello/you").json() == {"message": "Hello, you."}

        r = c.post("/items", json={"name": "pen", "price": 1.5, "quantity": 3})
        assert r.status_code == 201
        assert r.json() == {"item": {"name": "pen", "price": 1.5, "quantity": 3},
                            "total": 4.5}
        r = c.post("/items", json={"name": "", "price": -1})
        assert r.status_code == 422
        assert sorted(e["loc"][-1] for e in r.json()["detail"]) == ["name", "price"]


def test_fastapi_app_websocket(example):
    s = example("examples/fastapi_app.py")

    async def go():
        async with websockets.connect(ws_url(s, "/ws")) as ws:
            for text in ("hello", "granc", "ünïcode"):
                await ws.send(text)
                assert await ws.recv() == text.upper()
        # the client closed first: the server's handler just ends
    run(go())
    assert "Traceback" not in s.log()
