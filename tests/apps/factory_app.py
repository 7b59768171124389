"""An ASGI app whose lifespan startup sets a task factory: the tasks that
run its requests must come from that factory."""
import asyncio

made = set()


def factory(loop, coro, **kw):
    task = asyncio.Task(coro, loop=loop, **kw)
    made.add(task)
    return task


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                asyncio.get_running_loop().set_task_factory(factory)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    task = asyncio.current_task()
    body = f"{task in made} {task.get_name()}".encode()
    made.discard(task)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
