"""RSGI echo for the benchmarks: the request body back (echo_asgi.py's twin)."""


async def app(scope, proto):
    body = await proto()
    proto.response_bytes(200, [("content-type", "application/octet-stream")], body)
