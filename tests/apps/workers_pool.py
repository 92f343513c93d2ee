"""A multiprocessing pool whose tasks each create a span and count themselves.

Usage: python workers_pool.py spawn|fork   -> prints {"main": pid, "pids": [pid of each task]}
"""

import json
import multiprocessing
import os
import sys
import time

from opentelemetry import metrics, trace

TASKS = metrics.get_meter("workers_pool").create_counter("workers.tasks")


def task(i: int) -> int:
    with trace.get_tracer(__name__).start_as_current_span("task") as span:
        span.set_attribute("task.index", i)
        TASKS.add(1)
        time.sleep(0.05)  # keeps a worker busy so the next task goes to the other one
    return os.getpid()


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    pool = ctx.Pool(2)
    try:
        pids = pool.map(task, range(20), chunksize=1)
    finally:
        pool.close()  # workers leave normally (multiprocessing ends them with os._exit)
        pool.join()
    print(json.dumps({"main": os.getpid(), "pids": pids}))
