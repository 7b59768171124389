"""A Starlette WebSocket endpoint, served by granc in test_ws.py."""
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def chat(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            data = await ws.receive_json()
            await ws.send_json({"echo": data, "path": ws.url.path})
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/chat", chat)])
