"""bench/perrequest.py --server: the variant's providers (BENCH_VARIANT) in a uvicorn serving the bench app.

On PYTHONPATH for every variant but `cryostorm` (whose own hook sets its providers and FastAPI's defaults).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_providers

variant = os.environ.get("BENCH_VARIANT", "bare")
bench_providers.install(variant, os.environ.get("BENCH_ENDPOINT", ""))
bench_providers.one_server_span_per_request(variant)
