"""The views: /items/<id> reads a row from SQLite through SQLAlchemy inside the request.

The engine is made at import, as applications do: the SQLAlchemy instrumentation (activated by the
cryostorm hook when sqlalchemy is first imported) must already wrap `create_engine` by then.
The database file is named by DJANGO_SITE_DB (the test's tmp_path).
"""

import os
import threading

from django.http import HttpRequest, JsonResponse
from sqlalchemy import create_engine, text

engine = create_engine(f"sqlite:///{os.environ['DJANGO_SITE_DB']}")
_ready = threading.Lock()
_created = False


def _ensure_table() -> None:
    global _created
    with _ready:
        if not _created:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)"))
                conn.execute(text("INSERT OR IGNORE INTO items (id, name) VALUES (7, 'seven')"))
            _created = True


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    _ensure_table()
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name FROM items WHERE id = :id"), {"id": item_id}).first()
    return JsonResponse({"pid": os.getpid(), "item": row[0] if row else None})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})
