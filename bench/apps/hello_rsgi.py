"""RSGI hello world for the benchmarks (13 bytes): hello_asgi.py's twin."""


async def app(scope, proto):
    proto.response_bytes(200, [("content-type", "text/plain"), ("content-length", "13")],
                         b"Hello, world!")
