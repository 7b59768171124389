"""The WSGI app the tests run, one route per behaviour."""
import hashlib
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("content-type", "application/json"),
                            ("content-length", str(len(body)))])
    return [body]


def info(environ, start_response):
    keep = {k: v for k, v in environ.items()
            if isinstance(v, (str, bool, int, tuple)) and (k.isupper() or k.startswith("wsgi."))}
    keep["_input_type"] = type(environ["wsgi.input"]).__name__
    keep["_file_wrapper"] = "wsgi.file_wrapper" in environ
    keep["_thread"] = threading.current_thread().name
    keep["_pid"] = os.getpid()
    keep["_sys_path0"] = sys.path[0]
    return _json(start_response, keep)


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("content-type", "application/octet-stream")])
    return [body]


def digest(environ, start_response):
    """Stream the body in 64 KiB reads: length and sha256, never whole."""
    inp, h, n = environ["wsgi.input"], hashlib.sha256(), 0
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return _json(start_response, {"length": n, "sha256": h.hexdigest()})


def lines(environ, start_response):
    inp = environ["wsgi.input"]
    q = parse_qs(environ["QUERY_STRING"])
    mode = q.get("mode", ["iter"])[0]
    if mode == "readline":
        out = []
        while True:
            line = inp.readline()
            if not line:
                break
            out.append(line.decode())
    elif mode == "readlines":
        out = [x.decode() for x in inp.readlines()]
    elif mode == "readn":
        out = []
        while True:
            b = inp.read(3)
            if not b:
                break
            out.append(b.decode())
    else:
        out = [x.decode() for x in inp]
    return _json(start_response, out)


def stream(environ, start_response):
    q = parse_qs(environ["QUERY_STRING"])
    n = int(q.get("n", ["5"])[0])
    size = int(q.get("size", ["10"])[0])
    start_response("200 OK", [("content-type", "text/plain")])

    def gen():
        for i in range(n):
            yield (str(i % 10) * size).encode()
    return gen()


class Closing:
    closed = []

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        Closing.closed.append(True)


def closing(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return Closing([b"a", b"b", str(len(Closing.closed)).encode()])


def write_cb(environ, start_response):
    write = start_response("201 Created", [("content-type", "text/plain")])
    write(b"written-")
    return [b"returned"]


def reason(environ, start_response):
    start_response("299 Very Custom", [("content-type", "text/plain"), ("content-length", "2")])
    return [b"ok"]


def exc_info(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    try:
        raise ValueError("late")
    except ValueError:
        start_response("503 Service Unavailable", [("content-type", "text/plain")],
                       sys.exc_info())
    return [b"replaced"]


def err_app(environ, start_response):
    raise RuntimeError("boom from the app")


def err_iter(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])

    def gen():
        yield b"first"
        raise RuntimeError("boom mid-stream")
    return gen()


def filewrapper(environ, start_response):
    q = parse_qs(environ["QUERY_STRING"])
    path = q["path"][0]
    f = open(path, "rb")
    start_response("200 OK", [("content-type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 65536)


def slow(environ, start_response):
    q = parse_qs(environ["QUERY_STRING"])
    time.sleep(float(q.get("t", ["1"])[0]))
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"slow done"]


def noread(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", "6")])
    return [b"noread"]


def headers(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain"), ("x-one", "1"),
                              ("set-cookie", "a=1"), ("set-cookie", "b=2"),
                              ("server", "custom")])
    return [b""]


def bigresp(environ, start_response):
    q = parse_qs(environ["QUERY_STRING"])
    n = int(q.get("n", ["1048576"])[0])
    start_response("200 OK", [("content-type", "application/octet-stream")])
    return [b"x" * n]


def bad_start(environ, start_response):
    # start_response takes 2 or 3 positional arguments: 1 or 4 are a TypeError
    n = int(environ["QUERY_STRING"] or "1")
    start_response(*(["200 OK", [], None, None][:n]))
    return [b"started"]


def bad_header(environ, start_response):
    start_response("200 OK", [("x-bad", "a\r\nx-injected: 1")])
    return [b"no"]


def short(environ, start_response):
    start_response("200 OK", [("content-length", "10")])
    return [b"12345"]


def exit_worker(environ, start_response):
    os._exit(7)


ROUTES = {
    "/info": info, "/echo": echo, "/digest": digest, "/lines": lines,
    "/stream": stream, "/closing": closing, "/write": write_cb,
    "/reason": reason, "/exc_info": exc_info, "/err_app": err_app,
    "/err_iter": err_iter, "/filewrapper": filewrapper, "/slow": slow,
    "/noread": noread, "/headers": headers, "/bigresp": bigresp,
    "/bad_header": bad_header, "/bad_start": bad_start, "/short": short, "/exit": exit_worker,
}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    handler = ROUTES.get(path)
    if handler is None:
        start_response("404 Not Found", [("content-type", "text/plain")])
        return [b"not found: " + path.encode("latin-1")]
    return handler(environ, start_response)


def make_app():
    return app


class Holder:
    inner = staticmethod(app)


HOARD = []


def grow(environ, start_response):
    HOARD.append(bytearray(80 * 1024 * 1024))      # touched: resident
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"grown"]


ROUTES["/grow"] = grow
