"""The throughput benchmark's application: one FastAPI route, ``GET /hello`` -> ``{"hello": "world"}``.

Served by each variant's own uvicorn, e.g. ``uvicorn --app-dir bench/apps hello_app:app``.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
