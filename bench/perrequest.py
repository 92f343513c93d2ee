"""Per request, in-process: where a FastAPI request's CPU goes once telemetry is on (issue 17).

    .venv/bin/python bench/perrequest.py              # 5 alternating rounds of 20,000 requests
    .venv/bin/python bench/perrequest.py --rounds 3 --requests 10000

The throughput measure (`run.py`) sees the whole server under `wrk`; this one calls the `/hello` app
(`bench/apps/hello_app.py`) directly as ASGI, one task per request as uvicorn does, and reports CPU
microseconds per request, so the telemetry's share is seen without uvicorn's HTTP work. Variants, each
in its own process of the project venv (FastAPI's native telemetry on whatever providers are global):

- `bare`: no providers (FastAPI's telemetry steps aside);
- `sdk-floor`: the SDK's `TracerProvider` and `MeterProvider` with nothing attached (no span processor,
  no metric reader): creating the SERVER span and the request's measurements, exporting nothing. What
  any launcher on this SDK and FastAPI's telemetry pays at least;
- `sdk-export`: the same with the SDK's `BatchSpanProcessor` + OTLP gRPC span exporter and a periodic
  reader with the OTLP gRPC metric exporter, as a hand-written setup has it;
- `cryostorm`: under `cryostorm-run`, all three signals to the sink over OTLP gRPC (the bench's settings).

Prints the median of the rounds per variant; writes nothing (the figures go into README's Performance).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PROJECT_VENV, WORK, Sink, bare, cryostorm, log

DRIVER = """
import asyncio, os, sys, time
variant, endpoint, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if variant.startswith("sdk-"):
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    resource = Resource.create({"service.name": "bench"})
    tracer_provider, readers = TracerProvider(resource=resource), []
    if variant == "sdk-export":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
sys.path.insert(0, os.environ["BENCH_APPS"])
from hello_app import app

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
         "method": "GET", "scheme": "http", "path": "/hello", "raw_path": b"/hello", "root_path": "",
         "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
         "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def one():
    sent = []
    async def send(message):
        sent.append(message)
    await app(dict(SCOPE), receive, send)
    assert sent[0]["status"] == 200, sent

async def main():
    loop = asyncio.get_running_loop()
    for _ in range(1000):  # warm: first-use builds, caches
        await loop.create_task(one())
    started = time.process_time()
    for _ in range(count):
        await loop.create_task(one())
    print(f"{(time.process_time() - started) / count * 1e6:.1f}")

asyncio.run(main())
"""

VARIANTS = ("bare", "sdk-floor", "sdk-export", "cryostorm")


def one_round(variant: str, sink: Sink, count: int) -> float:
    v = cryostorm(sink.grpc) if variant == "cryostorm" else bare(PROJECT_VENV, variant, variant)
    env = v.full_env({"BENCH_APPS": str(Path(__file__).resolve().parent / "apps")})
    result = subprocess.run(v.argv("python", "-c", DRIVER, variant, sink.grpc, str(count)), env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    sink = Sink(PROJECT_VENV / "bin" / "python", WORK / "sink-perrequest.stderr")
    try:
        runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_no in range(args.rounds):
            order = VARIANTS[round_no % len(VARIANTS):] + VARIANTS[:round_no % len(VARIANTS)]
            for variant in order:
                runs[variant].append(one_round(variant, sink, args.requests))
                log(f"  round {round_no + 1} {variant:<10} {runs[variant][-1]:7.1f} us CPU per request")
    finally:
        sink.close()
    base = statistics.median(runs["bare"])
    log(f"\nFastAPI /hello in-process, CPU per request, median of {args.rounds} rounds of {args.requests:,}:")
    for variant, values in runs.items():
        median = statistics.median(values)
        log(f"  {variant:<10} {median:7.1f} us  (+{median - base:.1f} over bare; rounds "
            f"{' / '.join(f'{x:.1f}' for x in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
