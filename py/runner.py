"""The asyncio side of an ASGI or RSGI worker (embedded in granc by aio.c).

run() picks the loop (uvloop or asyncio), runs the app's lifespan, makes
granc's epoll descriptor a reader of the loop (poll() runs granc's events)
and waits for the drain.  None of it is on the request path.
"""
import asyncio, sys
ASGI = {'version': '3.0', 'spec_version': '2.3'}
def new_loop(kind):
    if kind in ('auto', 'uvloop'):
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:
            if kind == 'uvloop':
                raise RuntimeError('--loop uvloop: uvloop is not installed')
    elif kind not in ('asyncio',):
        raise RuntimeError(f'--loop {kind}: not available in granc')
    return asyncio.new_event_loop()
class Lifespan:
    def __init__(self, app, state, log):
        self.app, self.state, self.log = app, state, log
        self.events = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.started, self.stopped = loop.create_future(), loop.create_future()
        self.unsupported = False
    async def run(self):
        scope = {'type': 'lifespan', 'asgi': dict(ASGI), 'state': self.state}
        try:
            await self.app(scope, self.events.get, self.send)
        except BaseException as e:
            self.unsupported = True
            reported = any(f.done() and f.result() for f in (self.started, self.stopped))
            if not reported:
                self.log(30, 'ASGI Lifespan errored, continuing without Lifespan support')
        finally:
            for f in (self.started, self.stopped):
                if not f.done():
                    f.set_result(None)
    async def send(self, msg):
        t = msg['type']
        if t == 'lifespan.startup.complete':
            self.started.set_result(None)
        elif t == 'lifespan.startup.failed':
            self.started.set_result(msg.get('message') or 'lifespan startup failed')
        elif t == 'lifespan.shutdown.complete':
            self.stopped.set_result(None)
        elif t == 'lifespan.shutdown.failed':
            self.stopped.set_result(msg.get('message') or 'lifespan shutdown failed')
        else:
            raise RuntimeError('Unsupported ASGI message')
    async def startup(self):
        self.task = asyncio.get_running_loop().create_task(self.run())
        await self.events.put({'type': 'lifespan.startup'})
        return await self.started
    async def shutdown(self):
        if self.unsupported or self.task.done():
            return None
        await self.events.put({'type': 'lifespan.shutdown'})
        return await self.stopped
async def serve(app, lifespan, fd, poll, listen, log):
    loop = asyncio.get_running_loop()
    state = {}
    ls = Lifespan(app, state, log) if lifespan else None
    if ls:
        failed = await ls.startup()
        if failed:
            log(40, f'ASGI lifespan startup failed: {failed}')
            return 3
    done = loop.create_future()
    timer = [None, False]
    def tick():
        timer[1] = poll()
        if not done.done():
            timer[0] = loop.call_later(0.05 if timer[1] else 0.5, tick)
    def ready():
        if poll() and not timer[1]:
            timer[0].cancel()
            tick()
    loop.add_reader(fd, ready)
    timer[0] = loop.call_later(0.5, tick)
    listen(state, loop, done)
    await done
    loop.remove_reader(fd)
    if ls:
        failed = await ls.shutdown()
        if failed:
            log(40, f'ASGI lifespan shutdown failed: {failed}')
    return 0
def run(app, lifespan, fd, poll, listen, log, kind, init=None, fini=None):
    # init, fini: RSGI's __rsgi_init__(loop) and __rsgi_del__(loop), called
    # while the loop is not running
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)
    try:
        if init:
            init(loop)
        rc = loop.run_until_complete(serve(app, lifespan, fd, poll, listen, log))
        if fini:
            fini(loop)
        return rc
    finally:
        loop.close()
