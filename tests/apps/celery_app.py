"""A Celery app on kombu's filesystem transport: producer and prefork workers share a folder, no broker server.

CELERY_FS_DIR (required) holds the transport's folders: the queue (`queue/`), its exchange table (`control/`)
and `processed/` (unused: store_processed is off).
CELERY_FS_OUT (optional): the folder a producer writes its messages to instead of the queue. The transport
writes a message in place (open, then write), so a worker polling the queue can take the file between the
two and lose the message; a test that sends while a worker runs writes them here and renames them into
`queue/` whole (see tests/test_console_output.py).
Worker: celery -A celery_app worker --pool prefork ...   Producer: from celery_app import add; add.delay(1, 2)
"""

import logging
import os
from pathlib import Path

from celery import Celery
from opentelemetry import trace

_DIR = Path(os.environ["CELERY_FS_DIR"])
_QUEUE = _DIR / "queue"
_PROCESSED = _DIR / "processed"
_CONTROL = _DIR / "control"  # relative to the working directory by default
for _folder in (_QUEUE, _PROCESSED, _CONTROL):
    _folder.mkdir(parents=True, exist_ok=True)

app = Celery("celery_app")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": str(_QUEUE),
        "data_folder_out": os.environ.get("CELERY_FS_OUT") or str(_QUEUE),
        "processed_folder": str(_PROCESSED),
        "control_folder": str(_CONTROL),
        "store_processed": False,
        "polling_interval": 0.1,
    },
    task_ignore_result=True,  # no result backend
    worker_prefetch_multiplier=1,  # a child takes one task at a time: tasks spread over the children
    broker_connection_retry_on_startup=True,
)

log = logging.getLogger(__name__)


@app.task
def add(x: int, y: int) -> int:
    with trace.get_tracer(__name__).start_as_current_span("add.compute") as span:
        span.set_attribute("add.x", x)
        span.set_attribute("add.y", y)
        log.warning("adding %d and %d in pid %d", x, y, os.getpid())
    return os.getpid()
