"""A tiny FastAPI app for the end-to-end test (run by uvicorn under cryostorm-run)."""

import logging

from fastapi import FastAPI

app = FastAPI()
log = logging.getLogger("shop")


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict:
    log.warning("item %s read", item_id)
    return {"item_id": item_id, "name": f"item-{item_id}"}


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
