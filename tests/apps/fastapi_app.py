"""A tiny FastAPI app for the end-to-end test (run by uvicorn under cryostorm-run)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict:
    return {"item_id": item_id, "name": f"item-{item_id}"}


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
