"""One rule for every field granc writes (http_value_ok): a response
header, a reason phrase, an ASGI trailer and a websocket.accept header
with a control byte other than HTAB is refused with the same ValueError,
and its bytes never reach the wire (a NUL used to cut a trailer short)."""
import asyncio
import json

import pytest
import websockets
import websockets.exceptions

from conftest import raw

# NUL, SOH, LF, CR, ESC, DEL: each is refused; HTAB is allowed.
BAD = [0, 1, 10, 13, 27, 127]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from conftest import Server
    report = tmp_path_factory.mktemp("hdr") / "report.jsonl"
    env = {"HEADER_REPORT": str(report)}
    a = Server("header_app:app", interface="asgi", env=env).start()
    w = Server("header_app:wsgi", interface="wsgi", env=env).start()
    yield a, w, report
    a.stop()
    w.stop()


def reports(report, what):
    lines = report.read_text().splitlines() if report.exists() else []
    return [r for r in map(json.loads, lines) if r[0] == what]


def get(server, path):
    return raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n".encode())


@pytest.mark.parametrize("b", BAD)
def test_asgi_response_header(servers, b):
    a, _, report = servers
    out = get(a, f"/head?b={b}")
    assert out.startswith(b"HTTP/1.1 500 ") and b"x-t" not in out
    assert reports(report, "head")[-1][1:] == ["ValueError", "invalid value for header b'x-t'"]


@pytest.mark.parametrize("b", BAD)
def test_asgi_trailer(servers, b):
    a, _, report = servers
    out = get(a, f"/trailer?b={b}")
    assert out.startswith(b"HTTP/1.1 200 ") and b"4\r\ndata\r\n" in out
    # refused before anything of the trailer section is written: the body
    # is never ended, so the client sees a broken response, not a short one
    assert b"x-t" not in out and b"x-ok" not in out and not out.endswith(b"0\r\n\r\n")
    assert reports(report, "trailer")[-1][1:] == ["ValueError", "invalid value for header b'x-t'"]


def test_asgi_trailer_tab_is_sent(servers):
    a, _, _ = servers
    out = get(a, "/trailer?b=9")
    assert out.endswith(b"0\r\nx-ok: 1\r\nx-t: a\tb\r\n\r\n")


@pytest.mark.parametrize("b", BAD)
def test_websocket_accept_header(servers, b):
    a, _, report = servers

    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(f"ws://127.0.0.1:{a.port}/ws?b={b}"):
                pass
        return e.value.status_code
    assert asyncio.run(asyncio.wait_for(go(), 30)) == 403     # as any failure before accept
    assert reports(report, "accept")[-1][1:] == ["ValueError", "invalid value for header b'x-t'"]


def test_websocket_accept_header_tab_is_sent(servers):
    a, _, _ = servers

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{a.port}/ws?b=9") as c:
            assert c.response_headers["x-t"] == "a\tb"
            return await c.recv()
    assert asyncio.run(asyncio.wait_for(go(), 30)) == "accepted"


@pytest.mark.parametrize("path", ["/head", "/reason"])
@pytest.mark.parametrize("b", BAD)
def test_wsgi_header_and_reason(servers, path, b):
    _, w, _ = servers
    out = get(w, f"{path}?b={b}")
    assert out.startswith(b"HTTP/1.1 500 ") and b"a" + bytes([b]) + b"b" not in out
    assert b"x-t" not in out and b" R" not in out.split(b"\r\n")[0]
    assert "ValueError: invalid " in w.log()
