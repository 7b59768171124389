"""The app of test_wsgi_threads.py: requests that block, spin or are quick.

/hold waits (GIL released) until /release, /spin loops in Python holding
the GIL until /release, /upload reads its body, /mark?f=PATH creates PATH
then sleeps a second, /fast answers at once.  Every wait ends after 20 s
so that a failing test cannot hang."""
import os
import threading
import time
from urllib.parse import parse_qs

released = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = parse_qs(environ["QUERY_STRING"])
    body = b"fast"
    if path == "/hold":
        released.clear()
        body = b"held" if released.wait(20) else b"timeout"
    elif path == "/spin":
        released.clear()
        end = time.time() + 20
        while not released.is_set() and time.time() < end:
            pass
        body = b"spun"
    elif path == "/release":
        released.set()
    elif path == "/upload":
        body = environ["wsgi.input"].read()
    elif path == "/mark":
        open(q["f"][0], "w").close()
        time.sleep(1)
        body = b"marked"
    start_response("200 OK", [("content-type", "text/plain"),
                              ("content-length", str(len(body)))])
    return [body]
