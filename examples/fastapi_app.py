"""A FastAPI app: JSON, a validated POST body, and a WebSocket.

Run it from the repository root (FastAPI apps are ASGI apps):

    ./granc --interface asgi examples/fastapi_app.py

Routes:
    GET  /hello/{name}  JSON greeting; ?excited=true adds a "!"
    POST /items         a JSON body checked by a pydantic model
    WS   /ws            sends back each text message upper-cased
"""
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

# `app` is the name granc looks for in this file by default.
app = FastAPI(title="granc example")


@app.get("/hello/{name}")
async def hello(name: str, excited: bool = False):
    # Returned dicts are sent as JSON.  Path and query parameters are
    # converted and validated from the type hints.
    return {"message": f"Hello, {name}" + ("!" if excited else ".")}


class Item(BaseModel):
    # A request body that does not match this model gets a 422 answer
    # explaining what is wrong, before our code runs.
    name: str = Field(..., min_length=1)
    price: float = Field(..., gt=0)
    quantity: int = 1


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"item": item.dict(), "total": round(item.price * item.quantity, 2)}


@app.websocket("/ws")
async def shout(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(text.upper())
    except WebSocketDisconnect:
        pass  # the client closed the connection
