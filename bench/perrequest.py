"""Per request: where a FastAPI request's CPU goes once telemetry is on (issue 17).

    .venv/bin/python bench/perrequest.py              # in-process: 5 alternating rounds of 20,000 requests
    .venv/bin/python bench/perrequest.py --rounds 3 --requests 10000
    .venv/bin/python bench/perrequest.py --server     # under uvicorn and wrk: 5 alternating rounds of 8 s

The throughput measure (`run.py`) sees the whole server under `wrk`; by default this one calls the `/hello`
app (`bench/apps/hello_app.py`) directly as ASGI, one task per request as uvicorn does, and reports CPU
microseconds per request, so the telemetry's share is seen without uvicorn's HTTP work. `--server` serves it
with uvicorn pinned to one CPU under `wrk -t1 -c32` on the others and reports req/s (and its ratio to bare)
and the server's CPU per request: the form issue 17's goal is stated in. Variants, each in its own process
of the project venv, serving the route with one SERVER span per request (FastAPI's native telemetry with its
operation spans off, as cryostorm-run's default has it; `--count-spans` shows it); the providers of all but
`bare` and `cryostorm` are in `bench/apps/bench_providers.py`:

- `bare`: no providers (FastAPI's telemetry steps aside);
- `fastapi-floor`: providers whose tracer and meter are the API's no-op ones, so FastAPI's telemetry runs
  its whole request path and nothing is recorded: what FastAPI's telemetry costs on its own, the floor of
  any implementation of the API;
- `light-bound`: a minimal pure-Python span and synchronous-instrument path (no sampling, limits,
  validation, exemplars or export): a lower bound for a span and metric path of cryostorm's own;
- `sdk-floor-traces`: the SDK's `TracerProvider` with a span processor that does nothing; no metrics;
- `sdk-floor`: that and the SDK's `MeterProvider` with an in-memory reader never read: the SERVER span
  created and ended, the request's measurements aggregated, nothing exported. What any launcher on this
  SDK and FastAPI's telemetry pays at least;
- `sdk-export`: the SDK's `BatchSpanProcessor` + OTLP gRPC span exporter and a periodic reader with the
  OTLP gRPC metric exporter, as a hand-written setup has it;
- `cryostorm`: under `cryostorm-run`, all three signals to the sink over OTLP gRPC (the bench's settings).

Not run unless named (`--variants`): cryostorm-run with one setting changed, the levers a deployment has
when the per-request cost matters more than what the setting gives:

- `cryostorm-sampled`: `tracing.sampling_strategy=parentbased_traceidratio`, `tracing.sample_rate=0.1`
  (a request without a sampled parent gets a SERVER span one time in ten; its measurements are all kept);
- `cryostorm-no-metrics`: `metrics.enabled=false` (FastAPI's request metrics not recorded; a collector's
  span-to-metrics connector can make them from the spans);
- `cryostorm-no-exemplars`: `OTEL_METRICS_EXEMPLAR_FILTER=always_off` (measurements not tied to spans).
- `cryostorm-lean`: 10 % sampling and metrics off together.

In-process, all on one CPU (the sink included; see `main`). Prints the median of the rounds per variant;
writes nothing (the figures go into README's Performance).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    APPS,
    LOCAL,
    PROJECT_VENV,
    WORK,
    Sink,
    Variant,
    bare,
    cryostorm,
    free_port,
    log,
    parse_wrk,
    pid_cpu_s,
    stop_server,
    wait_ready,
)

DRIVER = """
import asyncio, os, sys, time
variant, endpoint, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
checking = sys.argv[4:] == ["--count-spans"]
sys.path.insert(0, os.environ["BENCH_APPS"])
import bench_providers
bench_providers.install(variant, endpoint)
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
    if variant == "light-bound":
        ended = bench_providers.ENDED
# Every variant serves the bench app's route with one SERVER span per request, as cryostorm-run's default
# has it (FastAPI's operation spans off; the contrib middleware where FastAPI has no telemetry of its own)
bench_providers.one_server_span_per_request(variant)
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
        names = [s if isinstance(s, str) else f"{s.kind.name} {s.name}" for s in ended]  # light-bound's spans
        print(*sorted(set(names)), sep=", ")
        print(f"{len(names) / count:.2f} spans per request")
    print(f"{(time.process_time() - started) / count * 1e6:.1f}")

asyncio.run(main())
"""

VARIANTS = ("bare", "fastapi-floor", "light-bound", "sdk-floor-traces", "sdk-floor", "sdk-export", "cryostorm")
# cryostorm-run with one setting changed (run only when named: --variants)
SETTINGS = {
    "cryostorm": {},
    "cryostorm-sampled": {"CRYOSTORM_TRACING__SAMPLING_STRATEGY": "parentbased_traceidratio",
                          "CRYOSTORM_TRACING__SAMPLE_RATE": "0.1"},
    "cryostorm-no-metrics": {"CRYOSTORM_METRICS__ENABLED": "false"},
    "cryostorm-no-exemplars": {"OTEL_METRICS_EXEMPLAR_FILTER": "always_off"},
}
SETTINGS["cryostorm-lean"] = {**SETTINGS["cryostorm-sampled"], **SETTINGS["cryostorm-no-metrics"]}


def rotated(round_no: int, variants: tuple[str, ...] = VARIANTS) -> tuple[str, ...]:
    """The variants in round `round_no`'s order: each round starts one later, so none always goes first."""
    start = round_no % len(variants)
    return variants[start:] + variants[:start]


def launcher(variant: str, sink: Sink) -> Variant:
    """How `variant` is started: under cryostorm-run with its settings, or the project venv's python."""
    if variant in SETTINGS:
        return cryostorm(sink.grpc, extra=SETTINGS[variant])
    return bare(PROJECT_VENV, variant, variant)


def one_round(variant: str, sink: Sink, count: int, *extra: str) -> list[str]:
    """The driver's output lines (the last one: CPU microseconds per request)."""
    v = launcher(variant, sink)
    env = v.full_env({"BENCH_APPS": str(Path(__file__).resolve().parent / "apps")})
    result = subprocess.run(v.argv("python", "-c", DRIVER, variant, sink.grpc, str(count), *extra), env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()


def one_server_round(variant: str, sink: Sink, seconds: int, cpus: tuple[set[int], set[int]]) -> tuple[float, float]:
    """(req/s, server CPU µs per request): uvicorn serving the bench app on `cpus[0]`, `wrk` on `cpus[1]`."""
    v = launcher(variant, sink)
    extra = {"BENCH_VARIANT": variant, "BENCH_ENDPOINT": sink.grpc}
    if variant not in SETTINGS:  # the variant's providers; cryostorm's hook sets its own
        extra["PYTHONPATH"] = str(APPS / "perrequest_site")
    port = free_port()
    url = f"http://{LOCAL}:{port}/hello"
    argv = v.argv("uvicorn", "--app-dir", str(APPS), "--host", LOCAL, "--port", str(port), "--no-access-log",
                  "--log-level", "warning", "hello_app:app")
    server_cpus, load_cpus = (",".join(map(str, sorted(c))) for c in cpus)
    proc = subprocess.Popen(["taskset", "-c", server_cpus, *argv], env=v.full_env(extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    load = ["taskset", "-c", load_cpus, "wrk", "-t1", "-c32", url]
    try:
        wait_ready(proc, port)
        subprocess.run([*load, "-d2s"], capture_output=True, check=True, timeout=60)  # warm-up, discarded
        before = pid_cpu_s(proc.pid)
        result = subprocess.run([*load, f"-d{seconds}s"], capture_output=True, text=True, check=True,
                                timeout=seconds + 60)
        cpu_s = pid_cpu_s(proc.pid) - before
    finally:
        stop_server(proc)
    measured = parse_wrk(result.stdout)
    if measured["errors"] or measured["non_2xx"]:
        raise RuntimeError(f"{variant}: wrk saw errors or non-2xx answers:\n{result.stdout}")
    return measured["rps"], cpu_s / measured["requests"] * 1e6


def server_mode(sink: Sink, rounds: int, seconds: int, variants: tuple[str, ...]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--server needs two CPUs: one for the server, one for wrk and the sink")
    split = ({cpus[0]}, set(cpus[1:]))
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for round_no in range(rounds):
        for variant in rotated(round_no, variants):
            runs[variant].append(one_server_round(variant, sink, seconds, split))
            rps, cpu = runs[variant][-1]
            log(f"  round {round_no + 1} {variant:<22} {rps:8.0f} req/s {cpu:7.1f} us server CPU per request")
    base = statistics.median(r for r, _ in runs["bare"]) if "bare" in runs else float("nan")
    log(f"\nFastAPI /hello under uvicorn (1 CPU) and wrk -t1 -c32 -d{seconds}s (the other CPUs), median of "
        f"{rounds} rounds:")
    for variant, values in runs.items():
        rps, cpu = statistics.median(r for r, _ in values), statistics.median(c for _, c in values)
        log(f"  {variant:<22} {rps:8.0f} req/s  {rps / base:.3f}x bare  {cpu:7.1f} us server CPU per request  "
            f"(req/s per round {' / '.join(f'{r:.0f}' for r, _ in values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--count-spans", action="store_true",
                        help="only show the spans each variant makes per request (a few requests, nothing timed)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the variants' threads run on every CPU (see README: the exporting threads' "
                             "GIL hand-offs then cost the program's thread more)")
    parser.add_argument("--server", action="store_true",
                        help="serve each variant with uvicorn on one CPU under wrk on the others instead of calling "
                             "the app in-process: req/s and server CPU per request")
    parser.add_argument("--seconds", type=int, default=8, help="--server: wrk's measured duration per round")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(dict.fromkeys((*VARIANTS, *SETTINGS)))} "
                             f"(default: the first seven; ratios need bare)")
    args = parser.parse_args(argv)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS and v not in SETTINGS]
    if unknown or not variants:
        parser.error(f"unknown variant(s) {', '.join(unknown) or '(none given)'}")
    if args.server:
        WORK.mkdir(parents=True, exist_ok=True)
        sink = Sink(PROJECT_VENV / "bin" / "python", WORK / "sink-perrequest.stderr")
        try:
            server_mode(sink, args.rounds, args.seconds, variants)
        finally:
            sink.close()
        return 0
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
            for variant in variants:
                log(f"  {variant:<22} " + " / ".join(one_round(variant, sink, 100, "--count-spans")[:-1]))
        finally:
            sink.close()
        return 0
    try:
        runs: dict[str, list[float]] = {v: [] for v in variants}
        for round_no in range(args.rounds):
            for variant in rotated(round_no, variants):
                runs[variant].append(float(one_round(variant, sink, args.requests)[-1]))
                log(f"  round {round_no + 1} {variant:<22} {runs[variant][-1]:7.1f} us CPU per request")
    finally:
        sink.close()
    base = statistics.median(runs["bare"]) if "bare" in runs else float("nan")
    log(f"\nFastAPI /hello in-process, CPU per request, median of {args.rounds} rounds of {args.requests:,}:")
    for variant, values in runs.items():
        median = statistics.median(values)
        log(f"  {variant:<22} {median:7.1f} us  (+{median - base:.1f} over bare; rounds "
            f"{' / '.join(f'{x:.1f}' for x in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
