"""Soak: a long-running server under a flapping collector, side by side with opentelemetry-instrument.

    .venv/bin/python bench/soak.py                  # 10 min per variant: collector 60 s up / 30 s down
    .venv/bin/python bench/soak.py --minutes 3      # shorter, same shape

Each variant serves `bench/apps/hello_app.py` with `gunicorn -w 2 -k uvicorn.workers.UvicornWorker`
under its launcher, a paced load of `--rate` requests/s (one SERVER span each), the sink
(`bench/sink.py`) going down and up on schedule; then SIGTERM to the master (a rolling restart).
Every 5 s it samples RSS, open fds and threads of each worker. It reports the accounting (requests
served, spans received, spans reported lost on stderr), p99 latency while the collector is up and
while it is down, and how each worker's RSS moved from minute 2 to the end. Writes
`bench/results/<date>-<host>-soak.{md,json}`.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    ANCHOR_VENV,
    APPS,
    LOCAL,
    PROJECT_VENV,
    RESULTS,
    WORK,
    Sink,
    anchor,
    cryostorm,
    ensure_venvs,
    free_port,
    log,
    missing_requirements,
    run,
    table,
)

LOSS = re.compile(r"cryostorm: (?:spans: )?(\d+) spans? (?:dropped|not (?:confirmed )?delivered)")
RUNNING_LOSS = re.compile(r"cryostorm: spans: (.*) since the last report")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def sample(pid: int) -> dict[str, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(values["VmRSS"].split()[0]), "threads": int(values["Threads"]), "fds": fds}


class Load:
    """Paced GET /hello over keep-alive connections; every answer timed and stamped."""

    def __init__(self, port: int, rate: float, threads: int = 4) -> None:
        self.port, self.interval, self.threads = port, threads / rate, threads
        self.records: list[tuple[float, float, bool]] = []  # (monotonic start, ms, ok)
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _client(self, index: int) -> None:
        conn = http.client.HTTPConnection(LOCAL, self.port, timeout=10)
        next_at = time.monotonic() + index * self.interval / self.threads
        mine: list[tuple[float, float, bool]] = []
        while not self.stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += self.interval
            started = time.monotonic()
            ok = False
            try:
                conn.request("GET", "/hello")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(LOCAL, self.port, timeout=10)
            mine.append((started, (time.monotonic() - started) * 1000, ok))
        conn.close()
        with self._lock:
            self.records.extend(mine)

    def run_until(self, seconds: float) -> None:
        pool = [threading.Thread(target=self._client, args=(i,)) for i in range(self.threads)]
        for thread in pool:
            thread.start()
        time.sleep(seconds)
        self.stop.set()
        for thread in pool:
            thread.join()


def warm_up(port: int, sink: Sink, requests: int = 20) -> None:
    """A few requests, then wait until their SERVER spans (and the readiness request's) have arrived;
    they are not part of the accounting."""
    conn = http.client.HTTPConnection(LOCAL, port, timeout=10)
    for _ in range(requests):
        conn.request("GET", "/hello")
        conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and int(sink._ask("count")["server_spans"]) < requests:
        time.sleep(0.5)
    time.sleep(1.0)
    sink.reset()


def one_variant(  # noqa: PLR0912, PLR0915  (one soak, start to end, reads best as one story)
    variant: Any, sink: Sink, minutes: float, up_s: float, down_s: float, rate: float,
) -> dict[str, Any]:
    sink.reset()
    port = free_port()
    argv = variant.argv("gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "--bind", f"{LOCAL}:{port}",
                        "--chdir", str(APPS), "--no-control-socket", "hello_app:app")
    err_path = WORK / f"soak-{variant.key}.stderr"
    with err_path.open("w") as err:
        server = subprocess.Popen(argv, env=variant.full_env(), stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)
    deadline = time.monotonic() + 60
    while True:  # ready: / answers
        try:
            conn = http.client.HTTPConnection(LOCAL, port, timeout=2)
            conn.request("GET", "/hello")
            conn.getresponse().read()
            conn.close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{variant.label}: server not ready: {err_path.read_text()[-2000:]}") from None
            time.sleep(0.2)
    warm_up(port, sink)
    total_s = minutes * 60
    load = Load(port, rate)
    loader = threading.Thread(target=load.run_until, args=(total_s,))
    started = time.monotonic()
    loader.start()
    windows: list[tuple[float, float]] = []  # (down from, up again) relative to start
    samples: list[dict[str, Any]] = []
    state_up, next_flip, next_sample = True, up_s, 0.0
    while loader.is_alive():
        elapsed = time.monotonic() - started
        if elapsed >= next_flip:
            if state_up:
                sink._ask("down")
                windows.append((elapsed, total_s))
                next_flip = elapsed + down_s
            else:
                sink._ask("up")
                windows[-1] = (windows[-1][0], elapsed)
                next_flip = elapsed + up_s
            state_up = not state_up
        if elapsed >= next_sample:
            for worker in children(server.pid):
                values = sample(worker)
                if values:
                    samples.append({"t": round(elapsed, 1), "pid": worker, **values})
            next_sample += 5.0
        time.sleep(0.05)
    loader.join()
    if not state_up:
        sink._ask("up")
        windows[-1] = (windows[-1][0], time.monotonic() - started)
    time.sleep(min(up_s, 20))  # a last stretch with the collector up, as a deploy would come later
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(30)
    counts = sink.count(settle_s=1.0, timeout_s=30)
    stderr = err_path.read_text(errors="replace")
    served = sum(1 for _, _, ok in load.records if ok)
    down_latency, up_latency = [], []
    for at, ms, ok in load.records:
        if ok:
            rel = at - started
            (down_latency if any(a <= rel < b for a, b in windows) else up_latency).append(ms)
    reported_exit = sum(int(m.group(1)) for m in LOSS.finditer(stderr))
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_pid.setdefault(s["pid"], []).append(s)
    growth = {}
    for worker, rows in by_pid.items():
        later = [r for r in rows if r["t"] >= 120] or rows
        mid = [r for r in rows if r["t"] >= 300] or later
        growth[worker] = {"rss_mb_min2": round(later[0]["rss_kb"] / 1024, 1),
                          "rss_mb_min5": round(mid[0]["rss_kb"] / 1024, 1),
                          "rss_mb_end": round(rows[-1]["rss_kb"] / 1024, 1),
                          "fds": (min(r["fds"] for r in rows), max(r["fds"] for r in rows)),
                          "threads": (min(r["threads"] for r in rows), max(r["threads"] for r in rows))}
    return {
        "variant": variant.label, "command": " ".join(argv),
        "exit_status": server.returncode, "served": served, "failed_requests": len(load.records) - served,
        "received_spans": counts["spans"], "received_server_spans": counts["server_spans"],
        "reported_lost_exit_lines": reported_exit,
        "running_loss_lines": len(RUNNING_LOSS.findall(stderr)),
        "p99_up_ms": percentile(up_latency, 0.99), "p99_down_ms": percentile(down_latency, 0.99),
        "outages": [(round(a, 1), round(b, 1)) for a, b in windows], "workers": growth,
        "stderr_tail": stderr[-3000:], "samples": samples,
    }


def fmt_load(result: dict[str, Any], when: str) -> str:
    return "/".join(f"{x:.1f}" for x in result.get("loadavg", {}).get(when, ())) or "-"


def render(result: dict[str, Any]) -> str:
    rows = []
    for r in result["runs"]:
        delivered = r["received_server_spans"] / r["served"] if r["served"] else 0
        rows.append([r["variant"], f"{r['served']:,}", f"{r['received_server_spans']:,}", f"{delivered:.2%}",
                     f"{r['received_spans']:,}", r["reported_lost_exit_lines"], r["running_loss_lines"],
                     f"{r['p99_up_ms']:.1f}" if r["p99_up_ms"] else "-",
                     f"{r['p99_down_ms']:.1f}" if r["p99_down_ms"] else "-", r["exit_status"]])
    lines = [f"# Soak: {result['minutes']:g} min per variant, collector {result['up_s']:g} s up / "
             f"{result['down_s']:g} s down, {result['rate']:g} requests/s, gunicorn -w 2 UvicornWorker",
             "", f"{result['date']}, {result['machine']}, Python {result['python']}, commit {result['commit']}. "
             f"Load average (1/5/15 min) at start {fmt_load(result, 'start')}, at end {fmt_load(result, 'end')}.", "",
             "Accounting: one SERVER span per request served, counted at the sink (opentelemetry-instrument's ASGI",
             "middleware adds two more spans per request, in the all-spans column).", "",
             table(["variant", "requests served", "SERVER spans received", "delivered", "all spans received",
                    "reported lost (exit lines)", "loss lines while running", "p99 up (ms)", "p99 down (ms)", "exit"],
                   rows, markdown=True), ""]
    for r in result["runs"]:
        lines.append(f"## {r['variant']}: per worker (RSS from minute 2 to the end, fds and threads min-max)")
        lines.append("")
        lines.append(table(["pid", "RSS min 2 (MB)", "RSS min 5 (MB)", "RSS end (MB)", "fds", "threads"],
                           [[pid, w["rss_mb_min2"], w.get("rss_mb_min5", "-"), w["rss_mb_end"],
                             "{}-{}".format(*w["fds"]),
                             "{}-{}".format(*w["threads"])] for pid, w in r["workers"].items()], markdown=True))
        lines.append("")
        lines.append(f"Outages (s from start): {r['outages']}. Command: `{r['command']}`")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--up", type=float, default=60.0, help="seconds the collector is up between outages")
    parser.add_argument("--down", type=float, default=30.0, help="seconds each outage lasts")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second (one span each)")
    parser.add_argument("--only", choices=["cryostorm", "anchor"], help="one variant only")
    args = parser.parse_args(argv)
    ensure_venvs()
    for python in (ANCHOR_VENV / "bin" / "python", PROJECT_VENV / "bin" / "python"):
        if missing_requirements(python, ["gunicorn"]):
            run([str(python), "-m", "pip", "install", "-q", "gunicorn"], timeout=600)
    WORK.mkdir(parents=True, exist_ok=True)
    sink = Sink(PROJECT_VENV / "bin" / "python", WORK / "soak-sink.stderr")
    try:
        variants = [v for v in (anchor(sink.grpc, metrics=False, logs=False),
                                cryostorm(sink.grpc, metrics=False, logs=False)) if args.only in (None, v.key)]
        runs = []
        loads = {"start": os.getloadavg()}
        for variant in variants:
            log(f"== soak: {variant.label}, {args.minutes:g} min")
            runs.append(one_variant(variant, sink, args.minutes, args.up, args.down, args.rate))
            r = runs[-1]
            log(f"   served {r['served']}, SERVER spans received {r['received_server_spans']}, "
                f"reported lost {r['reported_lost_exit_lines']}, p99 up {r['p99_up_ms']} ms, "
                f"down {r['p99_down_ms']} ms")
    finally:
        sink.close()
    loads["end"] = os.getloadavg()
    commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
    result = {"loadavg": loads, "date": datetime.date.today().isoformat(), "machine": platform.node(),
              "python": platform.python_version(),
              "commit": commit, "minutes": args.minutes, "up_s": args.up, "down_s": args.down, "rate": args.rate,
              "runs": runs}
    stem = RESULTS / f"{result['date']}-{platform.node()}-soak"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(result) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
