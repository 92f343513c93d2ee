"""A program that creates a span and runs a Python child that creates its own.

Prints {"main": pid, "child": pid of the child}.
"""

import json
import os
import subprocess
import sys

from opentelemetry import trace

CHILD = """
import os
from opentelemetry import trace
with trace.get_tracer("workers_child").start_as_current_span("child"):
    pass
print(os.getpid())
"""

with trace.get_tracer(__name__).start_as_current_span("parent"):
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
print(json.dumps({"main": os.getpid(), "child": int(child.stdout)}))
if child.stderr:
    sys.stderr.write(child.stderr)
