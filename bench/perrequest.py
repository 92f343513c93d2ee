"""Per request, in-process: where a FastAPI request's CPU goes once telemetry is on (issue 17).

    .venv/bin/python bench/perrequest.py              # 5 alternating rounds of 20,000 requests
    .venv/bin/python bench/perrequest.py --rounds 3 --requests 10000

The throughput measure (`run.py`) sees the whole server under `wrk`; this one calls the `/hello` app
(`bench/apps/hello_app.py`) directly as ASGI, one task per request as uvicorn does, and reports CPU
microseconds per request, so the telemetry's share is seen without uvicorn's HTTP work. Variants, each
in its own process of the project venv, serving the route with one SERVER span per request (FastAPI's
native telemetry with its operation spans off, as cryostorm-run's default has it; `--count-spans` shows it):

- `bare`: no providers (FastAPI's telemetry steps aside);
- `sdk-floor`: the SDK's `TracerProvider` with a span processor that does nothing and its `MeterProvider`
  with an in-memory reader never read: the SERVER span created and ended, the request's measurements
  aggregated, nothing exported. What any launcher on this SDK and FastAPI's telemetry pays at least;
- `sdk-export`: the same with the SDK's `BatchSpanProcessor` + OTLP gRPC span exporter and a periodic
  reader with the OTLP gRPC metric exporter, as a hand-written setup has it;
- `cryostorm`: under `cryostorm-run`, all three signals to the sink over OTLP gRPC (the bench's settings).

All on one CPU (the sink included; see `main`). Prints the median of the rounds per variant; writes
nothing (the figures go into README's Performance).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PROJECT_VENV, WORK, Sink, bare, cryostorm, log

DRIVER = """
import asyncio, inspect, os, sys, time
variant, endpoint, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
checking = sys.argv[4:] == ["--count-spans"]
if variant.startswith("sdk-"):
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    resource = Resource.create({"service.name": "bench"})
    tracer_provider, readers = TracerProvider(resource=resource), []
    if variant == "sdk-floor":
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        tracer_provider.add_span_processor(SpanProcessor())
        readers.append(InMemoryMetricReader())
    if variant == "sdk-export":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
ended = []
if checking:  # not while measuring: which spans each request makes
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor
    class Count(SpanProcessor):
        def on_end(self, span):
            ended.append(f"{span.kind.name} {span.name}")
    provider = trace.get_tracer_provider()
    if hasattr(provider, "add_span_processor"):  # bare: FastAPI's telemetry steps aside, no provider to ask
        provider.add_span_processor(Count())
sys.path.insert(0, os.environ["BENCH_APPS"])
import hello_app
from fastapi import FastAPI
# Every variant serves the bench app's route with one SERVER span per request, as cryostorm-run's default
# has it: FastAPI's operation spans (three more INTERNAL spans per request) off where FastAPI has them.
native = "telemetry" in inspect.signature(FastAPI).parameters
app = FastAPI(**({"telemetry": {"operation_spans": False}} if native else {}))
app.get("/hello")(hello_app.hello)
if not native and variant.startswith("sdk-"):  # no FastAPI telemetry: the contrib middleware, as cryostorm then
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])

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
    for _ in range(0 if checking else 1000):  # warm: first-use builds, caches
        await loop.create_task(one())
    # Steady state, as a server runs: what was warmed exported once (so exporters are built and connected:
    # cryostorm builds its exporter on first use, importing grpc on its worker thread) before measuring.
    from opentelemetry import metrics, trace
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        if hasattr(provider, "force_flush"):
            provider.force_flush()
    started = time.process_time()
    for _ in range(count):
        await loop.create_task(one())
    if checking:
        print(*sorted(set(ended)), sep=", ")
        print(f"{len(ended) / count:.2f} spans per request")
    print(f"{(time.process_time() - started) / count * 1e6:.1f}")

asyncio.run(main())
"""

VARIANTS = ("bare", "sdk-floor", "sdk-export", "cryostorm")


def one_round(variant: str, sink: Sink, count: int, *extra: str) -> list[str]:
    """The driver's output lines (the last one: CPU microseconds per request)."""
    v = cryostorm(sink.grpc) if variant == "cryostorm" else bare(PROJECT_VENV, variant, variant)
    env = v.full_env({"BENCH_APPS": str(Path(__file__).resolve().parent / "apps")})
    result = subprocess.run(v.argv("python", "-c", DRIVER, variant, sink.grpc, str(count), *extra), env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--count-spans", action="store_true",
                        help="only show the spans each variant makes per request (a few requests, nothing timed)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the variants' threads run on every CPU (see README: the exporting threads' "
                             "GIL hand-offs then cost the program's thread more)")
    args = parser.parse_args(argv)
    # Everything (the sink, each variant and its threads) on one CPU, inherited by every child: on this
    # machine's vCPUs a busy neighbour slows the measured thread by ~28 % (the same SDK-floor driver: 156 µs
    # per request alone, 200 µs beside a busy loop), so the sink decoding exports on the other vCPU would be
    # counted against the variants that export. On one CPU each variant's process time is its own work.
    if not args.no_pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    WORK.mkdir(parents=True, exist_ok=True)
    sink = Sink(PROJECT_VENV / "bin" / "python", WORK / "sink-perrequest.stderr")
    if args.count_spans:
        try:
            for variant in VARIANTS:
                log(f"  {variant:<10} " + " / ".join(one_round(variant, sink, 100, "--count-spans")[:-1]))
        finally:
            sink.close()
        return 0
    try:
        runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_no in range(args.rounds):
            order = VARIANTS[round_no % len(VARIANTS):] + VARIANTS[:round_no % len(VARIANTS)]
            for variant in order:
                runs[variant].append(float(one_round(variant, sink, args.requests)[-1]))
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
