"""WSGI threading: by default the app runs on the thread that holds the
loop until it blocks or runs long, and then another thread takes the loop
(pool.c); a slow request must never hold up quick ones.  With
--blocking-threads 1 everything runs on one thread, in order."""
import os
import select
import socket
import time

import pytest

from conftest import read_response

N_FAST = 20


def _send(s, path, extra=b""):
    c = s.connect(timeout=30)
    c.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
    return c


def _wait_for(path):
    end = time.time() + 15
    while not os.path.exists(path):
        assert time.time() < end, "the app never started"
        time.sleep(0.01)


def _pending(c):
    """No byte from c yet (the response is not there)."""
    return select.select([c], [], [], 0)[0] == []


def _fast_ones(s):
    """N_FAST quick requests, on new connections and on one keep-alive
    connection; all must be answered."""
    for _ in range(N_FAST // 2):
        with _send(s, "/fast") as c:
            st, _, body, _ = read_response(c)
            assert (st, body) == (200, b"fast")
    with s.connect(timeout=30) as c:
        buf = b""
        for _ in range(N_FAST - N_FAST // 2):
            c.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, body, buf = read_response(c, buf)
            assert (st, body) == (200, b"fast")


@pytest.fixture
def srv(wsgi_server):
    return wsgi_server("threads_app:app")       # the default: a pool


@pytest.mark.parametrize("route", ["/hold", "/spin"])
def test_blocked_or_spinning_app_does_not_hold_up_quick_ones(srv, route):
    """An app waiting (GIL released) or looping in Python (holding the GIL
    but for the switch interval): quick requests all complete meanwhile."""
    slow = _send(srv, route)
    time.sleep(0.2)             # (only so that it has started: the checks
    _fast_ones(srv)             #  hold either way)
    assert _pending(slow)
    with _send(srv, "/release") as c:
        assert read_response(c)[0] == 200
    st, _, body, _ = read_response(slow)
    assert (st, body) == (200, {"/hold": b"held", "/spin": b"spun"}[route])
    slow.close()


def test_app_blocked_in_wsgi_input_does_not_hold_up_quick_ones(srv):
    """The app reads a body the client has not sent (it waits for 100
    Continue): quick requests complete while it waits in wsgi.input."""
    slow = srv.connect(timeout=30)
    slow.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    st, _, _, buf = read_response(slow)
    assert st == 100            # the app is in wsgi.input.read()
    _fast_ones(srv)
    assert _pending(slow)
    slow.sendall(b"hello")
    st, _, body, _ = read_response(slow, buf)
    assert (st, body) == (200, b"hello")
    slow.close()


def _first_answered(a, b):
    ready = select.select([a, b], [], [], 20)[0]
    assert ready, "no response in 20 s"
    return "slow" if a in ready else "fast"


@pytest.mark.parametrize("flags, first", [([], "fast"), (["--blocking-threads", "1"], "slow")],
                         ids=["default", "one-thread"])
def test_sleeping_app_beside_a_quick_one(wsgi_server, tmp_path, flags, first):
    """A request whose app sleeps a second, then a quick one: by default
    the quick one is answered first; with --blocking-threads 1 it waits
    for the sleeping one."""
    s = wsgi_server("threads_app:app", *flags)
    mark = tmp_path / "started"
    slow = _send(s, "/mark?f=" + str(mark))
    _wait_for(mark)
    fast = _send(s, "/fast")
    assert _first_answered(slow, fast) == first
    other = slow if first == "fast" else fast
    assert read_response(other)[2] == (b"marked" if first == "fast" else b"fast")
    slow.close()
    fast.close()


def test_slow_requests_each_take_a_thread(wsgi_server, tmp_path):
    """--blocking-threads 3 with two sleeping apps: each has a thread, and
    a quick request takes the third while the loop keeps one of its own;
    with all three slots busy, the next request waits for one."""
    s = wsgi_server("threads_app:app", "--blocking-threads", "3")
    marks = [tmp_path / ("m%d" % i) for i in range(3)]
    slow = [_send(s, "/mark?f=" + str(m)) for m in marks[:2]]
    for m in marks[:2]:
        _wait_for(m)
    fast = _send(s, "/fast")
    assert _first_answered(slow[0], fast) == "fast"
    assert all(_pending(c) for c in slow)
    fast.close()
    slow.append(_send(s, "/mark?f=" + str(marks[2])))
    _wait_for(marks[2])
    fast = _send(s, "/fast")
    assert _first_answered(slow[0], fast) == "slow"
    assert read_response(fast)[2] == b"fast"
    for c in slow:
        assert read_response(c)[2] == b"marked"
        c.close()
    fast.close()
