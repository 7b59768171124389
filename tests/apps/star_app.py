"""A Starlette app for tests/test_frameworks.py, one route per behaviour.

STAR_REPORT names a file the lifespan writes "startup" and "shutdown" to;
with STAR_FAIL set, the startup raises.
"""
import asyncio
import contextlib
import hashlib
import os

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse,
                                 StreamingResponse)
from starlette.routing import Route


def _report(line):
    path = os.environ.get("STAR_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = "app-state"           # the app object's own state
    if os.environ.get("STAR_FAIL"):
        raise RuntimeError("database unreachable")
    _report("startup")
    # yielded state: the server copies it into every request's scope["state"]
    yield {"db": "connected", "counter": [0]}
    _report("shutdown")


async def item(request: Request):
    return JSONResponse({
        "item_id": request.path_params["item_id"],
        "name": request.path_params["name"],
        "q": request.query_params.get("q"),
        "tags": request.query_params.getlist("tag"),
        "path": request.url.path,
        "method": request.method,
        "client_host": request.client.host,
        "root_path": request.scope["root_path"],
    })


async def post_json(request: Request):
    raw = await request.body()
    data = await request.json()               # reuses the cached body
    return JSONResponse({"raw_len": len(raw), "data": data,
                         "content_type": request.headers.get("content-type")},
                        status_code=201)


async def numbers(n, delay, pad=0):
    for i in range(n):
        yield f"line {i}" + "." * pad + "\n"
        await asyncio.sleep(delay)


async def stream(request: Request):
    n = int(request.query_params.get("n", "5"))
    delay = float(request.query_params.get("delay", "0.01"))
    pad = int(request.query_params.get("pad", "0"))
    return StreamingResponse(numbers(n, delay, pad), media_type="text/plain",
                             headers={"x-stream": "yes"})


async def forever(request: Request):
    """Stream until the client goes; the generator's end goes to ?report."""
    report = request.query_params["report"]

    async def gen():
        i = 0
        try:
            while True:
                yield f"tick {i}\n"
                i += 1
                await asyncio.sleep(0.01)
        except BaseException as e:
            with open(report, "w") as f:
                f.write(f"{type(e).__name__} after {i}")
            raise
    return StreamingResponse(gen(), media_type="text/plain")


async def events(request: Request):
    """Server-sent events that poll request.is_disconnected() between events
    (a common pattern), while StreamingResponse also listens for the
    disconnect in a task of its own."""
    n = int(request.query_params.get("n", "5"))

    async def gen():
        for i in range(n):
            if await request.is_disconnected():
                return
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type="text/event-stream")


async def longpoll(request: Request):
    """Wait for the client to leave, a short while at a time."""
    timeouts = 0
    for _ in range(3):
        try:
            msg = await asyncio.wait_for(request.receive(), 0.05)
        except asyncio.TimeoutError:
            timeouts += 1
            continue
        if msg["type"] == "http.disconnect":
            return PlainTextResponse("gone")
    return JSONResponse({"timeouts": timeouts})


async def file(request: Request):
    return FileResponse(request.query_params["path"], media_type="application/x-test",
                        filename="data.bin")


async def count(request: Request):
    h, n, chunks, biggest = hashlib.sha256(), 0, 0, 0
    async for chunk in request.stream():
        if not chunk:                          # Starlette ends with b""
            continue
        h.update(chunk)
        n += len(chunk)
        chunks += 1
        biggest = max(biggest, len(chunk))
    return JSONResponse({"bytes": n, "sha256": h.hexdigest(), "chunks": chunks,
                         "max_chunk": biggest})


async def _write_later(path, text, delay):
    await asyncio.sleep(delay)
    with open(path, "w") as f:
        f.write(text)


async def background(request: Request):
    path = request.query_params["path"]
    task = BackgroundTask(_write_later, path, "written by the background task", 1.0)
    return PlainTextResponse("accepted", status_code=202, background=task)


async def state(request: Request):
    counter = request.state.counter            # the same list every request
    counter[0] += 1
    return JSONResponse({"db": request.state.db, "counter": counter[0],
                         "app_state": request.app.state.started})


async def loop(request: Request):
    lp = asyncio.get_running_loop()
    return JSONResponse({"loop": f"{type(lp).__module__}.{type(lp).__qualname__}"})


class Teapot(Exception):
    pass


async def boom(request: Request):
    raise RuntimeError("boom from starlette")


async def teapot(request: Request):
    raise Teapot("short and stout")


async def teapot_handler(request, exc):
    return JSONResponse({"error": str(exc)}, status_code=418)


app = Starlette(
    routes=[
        Route("/items/{item_id:int}/{name}", item),
        Route("/json", post_json, methods=["POST"]),
        Route("/stream", stream),
        Route("/forever", forever),
        Route("/file", file),
        Route("/events", events),
        Route("/longpoll", longpoll),
        Route("/count", count, methods=["POST", "PUT"]),
        Route("/background", background, methods=["POST"]),
        Route("/state", state),
        Route("/loop", loop),
        Route("/boom", boom),
        Route("/teapot", teapot),
    ],
    exception_handlers={Teapot: teapot_handler},
    lifespan=lifespan,
)
