"""A FastAPI app for tests/test_frameworks.py (FastAPI 0.92, pydantic 1)."""
import asyncio
import hashlib
from typing import List, Optional

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

app = FastAPI()
EVENTS = []
CLEANUPS = []


@app.on_event("startup")
async def startup():
    EVENTS.append("startup")


class Item(BaseModel):
    name: str = Field(..., min_length=1)
    price: float = Field(..., gt=0)
    quantity: int = 1
    tags: List[str] = []


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"item": item.dict(), "total": round(item.price * item.quantity, 2)}


@app.get("/users/{user_id}")
async def get_user(user_id: int, q: Optional[str] = None,
                   limit: int = Query(10, ge=1, le=100)):
    return {"user_id": user_id, "q": q, "limit": limit}


# dependency injection: a header check, a generator dependency with cleanup,
# and a dependency that depends on another one
async def token(x_token: str = Header(...)):
    if x_token != "secret":
        raise HTTPException(status_code=401, detail="bad token")
    return x_token


async def session():
    s = {"id": len(CLEANUPS) + 1}
    try:
        yield s
    finally:
        CLEANUPS.append(s["id"])


async def user(tok: str = Depends(token), sess: dict = Depends(session)):
    return {"name": "alice", "token": tok, "session": sess["id"]}


@app.get("/me")
async def me(u: dict = Depends(user)):
    return u


@app.get("/cleanups")
async def cleanups():
    return {"cleanups": CLEANUPS, "events": EVENTS}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form(...)):
    h, n = hashlib.sha256(), 0
    while True:
        chunk = await file.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return {"filename": file.filename, "content_type": file.content_type,
            "size": n, "sha256": h.hexdigest(), "note": note}


@app.get("/loop")
async def loop():
    lp = asyncio.get_running_loop()
    return {"loop": f"{type(lp).__module__}.{type(lp).__qualname__}"}
