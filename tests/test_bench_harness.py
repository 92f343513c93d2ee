"""The benchmark harness's own pieces (bench/run.py parsers, bench/sink.py control channel); no benchmark runs."""

from __future__ import annotations

import http.client
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from otlp_receiver import Receiver


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()

WRK_OUTPUT = """\
Running 15s test @ http://127.0.0.1:8000/hello
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.66ms    3.10ms  60.12ms   90.00%
    Req/Sec     1.03k   100.00     1.20k    70.00%
  Latency Distribution
     50%   15.10ms
     75%   16.20ms
     90%  812.00us
     99%    1.02s
  30810 requests in 15.01s, 4.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2052.63
Transfer/sec:    286.62KB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    parsed = harness.parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == pytest.approx(2052.63)
    assert parsed["requests"] == 30810
    assert parsed["duration_ms"] == pytest.approx(15010)
    assert parsed["p99_ms"] == pytest.approx(1020)
    assert parsed["percentiles_ms"]["90"] == pytest.approx(0.812)
    assert parsed["errors"] == 3
    assert parsed["non_2xx"] == 4


def test_parse_wrk_without_latency_distribution() -> None:
    parsed = harness.parse_wrk("  100 requests in 3.00s, 1KB read\nRequests/sec:     33.30\n")
    assert parsed["p99_ms"] is None
    assert parsed["requests"] == 100
    with pytest.raises(ValueError, match="Requests/sec"):
        harness.parse_wrk("garbage")


def test_small_helpers() -> None:
    assert harness.duration_ms("1.50m") == pytest.approx(90_000)
    assert harness.parse_ready("READY grpc=1234 http=5678\n") == (1234, 5678)
    assert harness.reported_drops("x\ncryostorm: 9547 spans dropped because the export queue was full\n") == 9547
    assert harness.reported_drops("cryostorm: telemetry not fully flushed") is None
    assert harness.median([3, None, 1, 2]) == 2
    assert harness.ratio(1.0, 0) is None
    assert harness.Goal("g", 0.4, "<=", 0.5).passed
    assert not harness.Goal("g", None, ">=", 1.0).passed
    assert not harness.Goal("g", 0.9, ">=", 1.0).passed
    assert "| a | b |" in harness.table(["a", "b"], [[1, 2]], markdown=True)


def test_ready_line_with_and_without_the_fake_datadog_agent() -> None:
    assert harness.ready_ports("READY grpc=1234 http=5678 dd=8126\n") == {"grpc": 1234, "http": 5678, "dd": 8126}
    assert harness.parse_ready("READY grpc=1234 http=5678 dd=8126\n") == (1234, 5678)
    assert harness.ready_ports("READY grpc=1234 http=5678") == {"grpc": 1234, "http": 5678}
    with pytest.raises(ValueError, match="greeting"):
        harness.ready_ports("READY grpc=1 http=2 dd=")


def _post_spans(port: int, count: int) -> int:
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(count):
        spans.add(trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/traces", request.SerializeToString(), {"Content-Type": "application/x-protobuf"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_sink_counts_and_resets_over_stdin() -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdin is not None
    assert proc.stdout is not None

    def ask(command: str) -> dict[str, int]:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        answer: dict[str, int] = json.loads(proc.stdout.readline())
        return answer

    try:
        _, http_port = harness.parse_ready(proc.stdout.readline())
        assert _post_spans(http_port, 3) == 200
        counts = ask("count")
        assert counts["spans"] == 3
        assert counts["requests"] == 1
        assert counts["dd_traces"] == 0  # no fake Datadog agent without --dd-port
        assert ask("reset") == {"ok": True}
        assert ask("count")["spans"] == 0
        assert "error" in ask("bogus")
        assert ask("quit")["spans"] == 0
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def _agent_request(port: int, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body, headers or {})
    response = conn.getresponse()
    answer = response.status, response.getheader("Content-Type") or "", response.read()
    conn.close()
    return answer


def test_sink_fake_datadog_agent_counts_traces_and_payloads() -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py"), "--dd-port", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None
    assert stdout is not None

    def ask(command: str) -> dict[str, int]:
        stdin.write(command + "\n")
        stdin.flush()
        answer: dict[str, int] = json.loads(stdout.readline())
        return answer

    try:
        dd_port = harness.ready_ports(stdout.readline())["dd"]
        assert _agent_request(dd_port, "PUT", "/v0.5/traces", b"\x93\x90\x90\x90",
                              {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": "3"}) == (
            200, "application/json", b'{"rate_by_service":{}}')
        # telemetry and the like are accepted, but are not trace payloads
        assert _agent_request(dd_port, "POST", "/telemetry/proxy/api/v2/apmtelemetry", b"{}")[0] == 200
        assert _agent_request(dd_port, "GET", "/info")[0] == 404
        counts = ask("count")
        assert (counts["dd_traces"], counts["dd_payloads"], counts["dd_requests"]) == (3, 1, 3)
        assert counts["spans"] == 0
        assert ask("reset") == {"ok": True}
        counts = ask("count")
        assert (counts["dd_traces"], counts["dd_payloads"], counts["dd_requests"]) == (0, 0, 0)
        assert ask("quit")["dd_traces"] == 0
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdin.close()
        stdout.close()


def test_scrub_names_paths_and_ports() -> None:
    cmd = f"X=http://127.0.0.1:4317 {ROOT}/.venv/bin/python Y=http://127.0.0.1:4318"
    assert harness.scrub({"a": [cmd]}, {"grpc": 4317, "http": 4318}) == {
        "a": ["X=http://127.0.0.1:<sink grpc> .venv/bin/python Y=http://127.0.0.1:<sink http>"]
    }


def test_foreign_cpu_values_are_collected_from_every_run() -> None:
    results = {"burst": {"grpc": {"runs": {"anchor": [{"foreign_cpu_pct": 2.0}, {"foreign_cpu_pct": 30.0}]}}},
               "startup": {"hyperfine_cpu": {"foreign_cpu_pct": 4.0}}, "quiet_gates": [{"foreign_cpu_pct": 99.0}]}
    assert sorted(harness.foreign_values({k: v for k, v in results.items() if k != "quiet_gates"})) == [2.0, 4.0, 30.0]
    assert "1 of them above 15 %" in harness.during_text(results)


EXIT_REPORT = """\
some program output
cryostorm: warning: Transient error StatusCode.UNAVAILABLE encountered while exporting traces to 127.0.0.1:9, \
retrying in 1.10s.
cryostorm: warning: Queue full, dropping Span.
cryostorm: 43616 spans dropped because the export queue was full (raise export_config.max_queue_size, or reduce volume)
cryostorm: 12 log records dropped because the export queue was full (raise \
export_config.max_queue_size, or reduce volume)
cryostorm: 1024 spans not delivered: the exporter gave up on them (see the errors above)
cryostorm: telemetry not fully flushed within 2 s (shutdown_timeout_millis): 16384 spans, 3 log records not confirmed \
delivered (512 spans of them in an export still under way at the deadline: the collector may yet have those); \
exporters still busy (traces: otlp/grpc); exiting anyway
"""


def test_parse_loss_report_reads_every_kind_of_loss() -> None:
    report = harness.parse_loss_report(EXIT_REPORT)
    assert report["dropped"] == {"spans": 43616, "log records": 12}
    assert report["failed"] == {"spans": 1024}
    assert report["unflushed"] == {"spans": 16384, "log records": 3}
    assert len(report["lines"]) == 4
    assert report["other_lines"] == 2
    assert all(line.startswith("cryostorm:") for line in report["lines"])
    # the burst's span-only drop parser reads the same report
    assert harness.reported_drops(EXIT_REPORT) == 43616


def test_parse_loss_report_without_losses() -> None:
    empty = harness.parse_loss_report("Traceback? no\n")
    assert empty == {"dropped": {}, "failed": {}, "unflushed": {}, "lines": [], "other_lines": 0}
    vague = harness.parse_loss_report(
        "cryostorm: telemetry not fully flushed within 2 s (shutdown_timeout_millis): the last metrics export not "
        "delivered; exporters still busy (none); exiting anyway\n")
    assert vague["unflushed"] == {}
    assert len(vague["lines"]) == 1


def test_vm_status_and_rss_growth() -> None:
    status = "Name:\tpython\nVmHWM:\t  90000 kB\nVmRSS:\t   81234 kB\nThreads:\t4\n"
    assert harness.vm_status_kb(status) == 81234
    assert harness.vm_status_kb(status, "VmHWM") == 90000
    assert harness.vm_status_kb("Name:\tzombie\n") is None
    samples = [(1.0, 20_000), (2.0, 50_000), (4.99, 60_000), (5.01, 61_000), (6.0, 70_000), (7.0, 65_000)]
    growth = harness.rss_growth(samples)
    assert growth["base_kb"] == 61_000
    assert growth["max_kb"] == 70_000
    assert growth["growth_kb"] == 9_000
    assert growth["growth_mb"] == pytest.approx(9_000 * 1024 / 1e6)
    short = harness.rss_growth([(1.0, 10), (2.0, 20)])
    assert short["base_kb"] is None
    assert short["growth_mb"] is None
    assert harness.rss_growth([])["max_kb"] is None


def test_fault_ratios_compare_each_state_with_its_own_launchers_up() -> None:
    medians = {"cryostorm-up": {"p99_ms": 50.0}, "cryostorm-down": {"p99_ms": 52.0},
               "cryostorm-slow": {"p99_ms": 60.0}, "anchor-up": {"p99_ms": 40.0}, "anchor-down": {"p99_ms": 80.0},
               "orphan-down": {"p99_ms": 1.0}}
    ratios = harness.fault_ratios(medians)
    assert ratios == {"cryostorm-down": pytest.approx(1.04), "cryostorm-slow": pytest.approx(1.2),
                      "anchor-down": pytest.approx(2.0)}
    assert harness.fault_ratios({"cryostorm-up": {"p99_ms": 0.0}, "cryostorm-down": {"p99_ms": None}}) == {
        "cryostorm-down": None}


def test_goal_strict_bounds() -> None:
    assert harness.Goal("g", 149.9, "<", 150.0).passed
    assert not harness.Goal("g", 150.0, "<", 150.0).passed
    assert harness.Goal("g", 150.0, "<=", 150.0).passed
    assert not harness.Goal("g", 1.0, ">", 1.0).passed


def _throughput_results(with_ddtrace: bool) -> dict[str, object]:
    def variant(rps: float, p99: float, spans: float, traces: float) -> dict[str, object]:
        run = {"rps": rps, "p99_ms": p99, "errors": 0, "non_2xx": 0, "foreign_cpu_pct": 3.0}
        return {"run": run, "median": {"rps": rps, "p99_ms": p99, "spans_per_request": spans,
                                       "dd_traces_per_request": traces, "server_peak_rss_kb": 51200,
                                       "foreign_cpu_pct_max": 3.0}}

    variants = {"bare": variant(3000.0, 20.0, 0.0, 0.0), "anchor": variant(1400.0, 40.0, 3.01, 0.0),
                "cryostorm": variant(2200.0, 30.0, 1.0, 0.0)}
    if with_ddtrace:
        variants["ddtrace"] = variant(2000.0, 35.0, 0.0, 1.002)
    t: dict[str, object] = {
        "runs": {k: [v["run"]] for k, v in variants.items()}, "median": {k: v["median"] for k, v in variants.items()},
        "rps_ratio": 2200 / 1400, "p99_ratio": 0.75, "anchor_vs_bare": 1400 / 3000, "cryostorm_vs_bare": 2200 / 3000}
    if with_ddtrace:
        t.update(rps_ratio_ddtrace=1.1, ddtrace_vs_bare=2000 / 3000)
    return {"throughput": t}


def test_throughput_goals_and_rendering_with_ddtrace() -> None:
    results = _throughput_results(with_ddtrace=True)
    goals = {g.name: g for g in harness.evaluate(results)}
    assert goals["FastAPI /hello req/s, cryostorm / anchor"].passed
    dd_goal = goals["FastAPI /hello req/s, cryostorm / ddtrace-run"]
    assert dd_goal.value == pytest.approx(1.1)
    assert dd_goal.op == ">="
    assert dd_goal.target == 1.0
    assert dd_goal.passed
    assert "1.00" in dd_goal.detail  # ddtrace's traces per request
    text = harness.render(results, list(goals.values()), markdown=True)
    assert "| ddtrace | 2,000 |" in text
    assert "traces/req at the fake agent" in text
    assert "| ddtrace | 2,000 | 2,000 | 35.00 | 35.00 | 1.00 |" in text  # traces/req, not the 0 spans at the sink
    assert "ddtrace 0.67x" in text
    assert "cryostorm / ddtrace-run: req/s 1.10" in text
    assert "ddtrace" in harness.render(results, list(goals.values()), markdown=False)


def test_throughput_goals_and_rendering_without_ddtrace() -> None:
    results = _throughput_results(with_ddtrace=False)
    goals = harness.evaluate(results)
    assert [g.name for g in goals] == ["FastAPI /hello req/s, cryostorm / anchor",
                                       "FastAPI /hello p99 latency, cryostorm / anchor",
                                       "FastAPI /hello req/s, cryostorm / bare python",
                                       "FastAPI /hello p99 latency, cryostorm / bare python"]
    by_name = {g.name: g for g in goals}
    assert (by_name["FastAPI /hello req/s, cryostorm / bare python"].op,
            by_name["FastAPI /hello req/s, cryostorm / bare python"].target) == (">=", 0.65)  # issue 17
    assert (by_name["FastAPI /hello p99 latency, cryostorm / bare python"].op,
            by_name["FastAPI /hello p99 latency, cryostorm / bare python"].target) == ("<=", 1.5)
    text = harness.render(results, goals, markdown=True)
    assert "ddtrace" not in text
    assert "| cryostorm | 2,200 |" in text
    assert "cryostorm / anchor: req/s 1.57, p99 0.75" in text


def _load_distant() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))  # distant.py imports run.py as `run`, as when run as a script
    spec = importlib.util.spec_from_file_location("bench_distant", ROOT / "bench" / "distant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _distant_row(delay: float, created: int, delivered: int, lag: float, p99: float) -> dict[str, object]:
    steady = {"created": created, "delivered": delivered, "delivered_pct": 100.0 * delivered / created,
              "max_lag_ms": lag, "growth_mb": 10.0}
    return {"delay_s": delay, "label": f"{delay:g} s", "steady": {"cryostorm": steady},
            "fastapi": {"cryostorm": {"p99_ms": p99}}}


def test_distant_goals_pass_only_on_the_figures_the_issue_asks_for() -> None:
    distant = _load_distant()
    assert distant.single_in_flight_ceiling(2.0, 30) == 512 * 32 // 2  # one batch per round trip, run + exit
    good = [_distant_row(0.0, 150_000, 150_000, 2, 20.0), _distant_row(0.05, 150_000, 150_000, 3, 21.0),
            _distant_row(0.2, 150_000, 150_000, 3, 21.5), _distant_row(2.0, 150_000, 90_000, 4, 21.9)]
    assert {g[3] for g in distant.goals(good, 30)} == {"PASS"}
    bad = [_distant_row(0.0, 150_000, 150_000, 2, 20.0), _distant_row(0.05, 150_000, 149_999, 3, 21.0),
           _distant_row(0.2, 150_000, 150_000, 208, 23.0), _distant_row(2.0, 150_000, 8_192 * 9, 4, 21.0)]
    failed = sorted(g[0] for g in distant.goals(bad, 30) if g[3] == "FAIL")
    assert failed == ["FastAPI p99 at 0.2 s / near", "delivered at 0.05 s",
                      "delivered at 2 s / one export in flight's ceiling", "not held at 0.2 s (worst lag)"]


def _startup_results(cryostorm_ms: float, hook_ms: float) -> dict[str, object]:
    names = {"bare-anchor": 18.0, "anchor": 700.0, "bare": 13.0, "cryostorm": 13.0 + cryostorm_ms,
             "cryostorm-no-cache": 300.0, "launcher-alone": 41.0, "hook-alone": 13.0 + hook_ms, "true": 1.0}
    hyperfine = {k: {"median": v, "mean": v, "stddev": 1.0, "min": v, "max": v, "runs": 20} for k, v in names.items()}
    rss = {k: {"median": kib, "samples": [kib]} for k, kib in
           (("bare-anchor", 8_000), ("anchor", 70_000), ("bare", 8_000), ("cryostorm", 18_000))}
    ms = {k: v["median"] for k, v in hyperfine.items()}
    return {"startup": {
        "hyperfine": hyperfine, "rss_kb": rss,
        "overhead_ms": {"anchor": 682.0, "cryostorm": cryostorm_ms}, "overhead_ratio": cryostorm_ms / 682.0,
        "extra_rss_kb": {"anchor": 62_000, "cryostorm": 10_000}, "extra_rss_ratio": 10_000 / 62_000,
        "launcher_over_bare_ms": ms["launcher-alone"] - ms["true"] - ms["bare"],
        "hook_over_bare_ms": hook_ms, "cold_overhead_ms": 287.0, "cold_overhead_ratio": 287.0 / 682.0}}


def test_startup_goals_are_issue_17s() -> None:
    """Total <= 0.15x the anchor's overhead (plan cache warm), the launcher alone <= 40 ms and the hook
    alone <= 60 ms over bare python, extra RSS <= 0.3x; the first start (no cache) is shown too."""
    good = {g.name: g for g in harness.evaluate(_startup_results(cryostorm_ms=95.0, hook_ms=55.0))}
    assert {name: (g.op, g.target, g.passed) for name, g in good.items()} == {
        "startup overhead, cryostorm / anchor": ("<=", 0.15, True),
        "startup overhead without the plan cache, cryostorm / anchor": ("<=", 0.5, True),
        "launcher alone, ms over bare python": ("<=", 40, True),
        "hook alone in a child, ms over bare python": ("<=", 60, True),
        "extra peak RSS at startup, cryostorm / anchor": ("<=", 0.3, True),
    }
    assert good["launcher alone, ms over bare python"].value == pytest.approx(27.0)  # 41 - 1 (true) - 13 (bare)
    bad = {g.name: g for g in harness.evaluate(_startup_results(cryostorm_ms=140.0, hook_ms=100.0))}
    assert not bad["startup overhead, cryostorm / anchor"].passed
    assert not bad["hook alone in a child, ms over bare python"].passed
    text = harness.render(_startup_results(cryostorm_ms=95.0, hook_ms=55.0), list(good.values()), markdown=True)
    assert "| hook-alone | 68.0 |" in text and "| launcher-alone | 41.0 |" in text
    assert "launcher alone 27.0 ms over bare python; hook alone in a child 55.0 ms" in text


def test_a_reference_cryostorm_in_the_same_run_shows_a_regression() -> None:
    """`--reference VENV`: an earlier cryostorm in the same throughput rounds; >= 0.95x of its req/s."""
    results = _throughput_results(with_ddtrace=True)
    t = results["throughput"]
    assert isinstance(t, dict)
    for rps, passed in ((2200.0, True), (2400.0, False)):
        t["runs"]["reference"] = [{"rps": rps, "p99_ms": 30.0, "errors": 0, "non_2xx": 0, "foreign_cpu_pct": 1.0}]
        t["median"]["reference"] = {"rps": rps, "p99_ms": 30.0, "spans_per_request": 1.0, "dd_traces_per_request": 0,
                                    "server_peak_rss_kb": 51200, "foreign_cpu_pct_max": 1.0}
        t.update(rps_ratio_reference=2200 / rps, reference_venv="/old/venv")
        goal = {g.name: g for g in harness.evaluate(results)}[
            "FastAPI /hello req/s, cryostorm / the reference cryostorm (no regression)"]
        assert (goal.op, goal.target, goal.passed) == (">=", 0.95, passed)
        assert "/old/venv" in goal.detail
        assert f"| reference | {rps:,.0f} |" in harness.render(results, [goal], markdown=True)


def test_a_reference_cryostorm_in_the_same_bursts_shows_a_regression() -> None:
    """`--reference VENV` also runs the earlier cryostorm in the burst: >= 0.95x of its creation rate, per
    protocol, so a regression is told apart from an anchor that measures faster on the day."""

    def launcher(rate: float, delivered: float, dropped: int | None) -> dict[str, object]:
        return {"rate": rate, "delivered_pct": delivered, "delivered_pct_min": delivered, "peak_rss_kb": 40960,
                "reported_dropped": [dropped], "foreign_cpu_pct_max": 0.5}

    for reference_rate, passed in ((40_000.0, True), (46_000.0, False)):
        burst = {}
        for protocol in ("grpc", "http/protobuf"):
            median = {"anchor": launcher(30_000.0, 55.0, None), "cryostorm": launcher(43_000.0, 100.0, None),
                      "reference": launcher(reference_rate, 100.0, None)}
            burst[protocol] = {"runs": {k: [{"rate": v["rate"], "delivered_pct": v["delivered_pct"]}]
                                        for k, v in median.items()},
                               "median": median, "rate_ratio": 43_000 / 30_000,
                               "rate_ratio_reference": 43_000 / reference_rate, "reference_venv": "/old/venv"}
        results: dict[str, object] = {"burst": burst}
        goals = {g.name: g for g in harness.evaluate(results)}
        for label in ("gRPC", "HTTP"):
            goal = goals[f"burst {label}: creation rate, cryostorm / the reference cryostorm (no regression)"]
            assert (goal.op, goal.target, goal.passed) == (">=", 0.95, passed)
            assert "/old/venv" in goal.detail and "reference delivered 100.00 %" in goal.detail
        text = harness.render(results, list(goals.values()), markdown=True)
        assert f"| http/protobuf | reference | {reference_rate:,.0f} |" in text
    for b in burst.values():  # as measured without --reference
        del b["rate_ratio_reference"], b["reference_venv"], b["median"]["reference"], b["runs"]["reference"]
    assert not any("reference" in g.name for g in harness.evaluate({"burst": burst}))


def test_results_name_the_commit_they_measured() -> None:
    """Results are committed with the commit they measured: the harness records it, and what differed."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    recorded = harness.commit_measured()
    assert recorded.startswith(f"{head} (")
    assert recorded.endswith("(clean)") == (not dirty)


def test_a_second_run_on_the_same_day_never_overwrites_the_first(tmp_path: Path) -> None:
    """A results file may already be committed with the commit it measured: a later run gets a name of its own."""
    assert harness.free_stem(tmp_path, "2026-12-02-vm") == "2026-12-02-vm"
    (tmp_path / "2026-12-02-vm.md").write_text("first")
    assert harness.free_stem(tmp_path, "2026-12-02-vm") == "2026-12-02-vm-2"
    (tmp_path / "2026-12-02-vm-2.json").write_text("{}")
    (tmp_path / "2026-12-02-vm-quick.md").write_text("a quick run: another name already")
    assert harness.free_stem(tmp_path, "2026-12-02-vm") == "2026-12-02-vm-3"
    assert harness.free_stem(tmp_path, "2026-12-02-vm-quick") == "2026-12-02-vm-quick-2"


def test_the_per_request_measure_names_its_variants() -> None:
    """bench/perrequest.py loads (it shares run.py's harness) and says what it compares."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "perrequest.py"), "--help"], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("`bare`", "`fastapi-floor`", "`light-bound`", "`sdk-floor-traces`",
                                                  "`sdk-floor`", "`sdk-export`", "`cryostorm`", "--server"))


# Three requests to the bench app in the server mode's own way (its sitecustomize sets the variant's providers
# and FastAPI's defaults); prints what reached the tracer and the meter.
_SERVED_THREE = """
import asyncio
from opentelemetry import metrics, trace
started, recorded = [], []
original_start, original_record = trace.NoOpTracer.start_span, metrics.NoOpHistogram.record
original_current = trace.NoOpTracer.start_as_current_span  # the contrib middleware's way (no start_span call)
trace.NoOpTracer.start_span = lambda self, *a, **k: started.append(1) or original_start(self, *a, **k)
trace.NoOpTracer.start_as_current_span = lambda self, *a, **k: started.append(1) or original_current(self, *a, **k)
metrics.NoOpHistogram.record = lambda self, *a, **k: recorded.append(1) or original_record(self, *a, **k)
import bench_providers, hello_app
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
         "path": "/hello", "raw_path": b"/hello", "root_path": "", "query_string": b"", "headers": [],
         "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}
async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}
async def send(message):
    pass
async def main():
    for _ in range(3):
        await hello_app.app(dict(scope), receive, send)
asyncio.run(main())
print(type(trace.get_tracer_provider()).__name__, type(metrics.get_meter_provider()).__name__)
print("no-op tracer spans", len(started), "no-op histogram records", len(recorded))
light = [f"{s.kind.name} {s.name} {s.attributes.get('http.route')}" for s in bench_providers.ENDED]
print("light spans", light)
"""


@pytest.mark.parametrize("variant", ["fastapi-floor", "light-bound"])
def test_the_per_request_floors_run_fastapis_telemetry_with_one_span_per_request(variant: str) -> None:
    """The `fastapi-floor` variant is a floor only if FastAPI's telemetry runs its request path under it (FastAPI
    steps aside for the API's own no-op provider classes): each request reaches its no-op tracer and meter.
    `light-bound` records what cryostorm records: one SERVER span per request (operation spans off, as
    cryostorm-run has them; the contrib middleware where FastAPI has no telemetry of its own), with its
    route."""
    apps = ROOT / "bench" / "apps"
    result = subprocess.run([PYTHON, "-c", _SERVED_THREE], cwd=apps, capture_output=True, text=True, timeout=120,
                            env=child_env({"PYTHONPATH": f"{apps / 'perrequest_site'}{':'}{apps}",
                                           "BENCH_VARIANT": variant}), check=False)
    assert result.returncode == 0, result.stderr
    providers, noop, light = result.stdout.splitlines()
    if variant == "fastapi-floor":
        assert providers == "_NoOpTracerProvider _NoOpMeterProvider"
        spans, records = (int(word) for word in noop.split() if word.isdigit())
        # FastAPI's native telemetry records one histogram point per request; the contrib middleware (a line
        # whose FastAPI predates native telemetry) its duration and size histograms
        assert spans == 3 and records in (3, 6, 9), noop
        assert light == "light spans []"
    else:
        assert providers == "_LightTracerProvider _LightMeterProvider"
        assert noop == "no-op tracer spans 0 no-op histogram records 0"
        assert light == f"light spans {['SERVER GET /hello /hello'] * 3}"


def _perrequest() -> ModuleType:
    """bench/perrequest.py as a module (its DRIVER, its SETTINGS)."""
    spec = importlib.util.spec_from_file_location("bench_perrequest", ROOT / "bench" / "perrequest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _perrequest_driver() -> str:
    driver: str = _perrequest().DRIVER
    return driver


def test_the_per_request_measure_serves_one_server_span_per_request_at_the_floor_and_under_cryostorm(
        otlp_receiver: Receiver) -> None:
    """The SDK floor and cryostorm-run make the same spans per request: one SERVER span (FastAPI's operation
    spans off, as cryostorm-run's default has them), so their difference is the export path, not span count."""
    driver, apps = _perrequest_driver(), str(ROOT / "bench" / "apps")
    floor = subprocess.run([PYTHON, "-c", driver, "sdk-floor", "unused", "40", "--count-spans"],
                           env=child_env({"BENCH_APPS": apps}), capture_output=True, text=True, timeout=120,
                           check=False)
    assert floor.returncode == 0, floor.stderr
    under = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-c", driver, "cryostorm", "unused", "40",
                            "--count-spans"],
                           env=child_env({"BENCH_APPS": apps, "CRYOSTORM_EXPORTER_TYPE": "otlp",
                                          "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
                                          "CRYOSTORM_SERVICE__NAME": "perrequest"}),
                           capture_output=True, text=True, timeout=120, check=False)
    assert under.returncode == 0, under.stderr
    for result in (floor, under):
        assert result.stdout.splitlines()[:2] == ["SERVER GET /hello", "1.00 spans per request"], result.stdout
    spans = otlp_receiver.wait_for_spans(40)
    assert len(spans) == 40 and {(s.kind, s.name) for s in spans} == {("SERVER", "GET /hello")}


@pytest.mark.parametrize("variant", ["cryostorm", "cryostorm-sampled", "cryostorm-no-metrics",
                                     "cryostorm-no-exemplars", "cryostorm-lean"])
def test_the_per_request_levers_change_only_what_they_name(otlp_receiver: Receiver, variant: str) -> None:
    """`bench/perrequest.py`'s levers (README *Performance*) are what their names say, at a real receiver:
    10 % sampling keeps every request's measurement and a SERVER span for about one request in ten; metrics
    off keeps one SERVER span per request and sends no request duration; exemplars off keeps both, without
    exemplars; `lean` is sampling and metrics off together. The plain variant has all of it."""
    requests = 200
    perrequest, apps = _perrequest(), str(ROOT / "bench" / "apps")
    result = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-c", perrequest.DRIVER, variant, "unused",
                             str(requests),
                             "--count-spans"],
                            env=child_env({"BENCH_APPS": apps, "CRYOSTORM_EXPORTER_TYPE": "otlp",
                                           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
                                           "CRYOSTORM_SERVICE__NAME": "levers", **perrequest.SETTINGS[variant]}),
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    # the exit flush confirmed delivery before the process ended: what is not at the receiver now never comes
    spans = [s for s in otlp_receiver.spans() if s.kind == "SERVER"]
    # FastAPI's native request duration; the contrib middleware's (a FastAPI without native telemetry)
    durations = [m for m in otlp_receiver.metrics() if m.kind == "histogram" and m.name in (
        "http.server.request.duration", "http.server.duration")]
    measured = sum(p["count"] for m in durations for p in m.points)
    exemplars = sum(len(p.exemplars) for m in durations for p in m.raw.histogram.data_points)
    print(f"{variant}: {len(spans)} SERVER spans, {measured} durations measured, {exemplars} exemplars")
    if variant in ("cryostorm-sampled", "cryostorm-lean"):
        assert 0 < len(spans) < requests / 2
    else:
        assert len(spans) == requests
    if variant in ("cryostorm-no-metrics", "cryostorm-lean"):
        assert measured == 0 and not otlp_receiver.metrics()
    else:
        assert measured == requests
        assert (exemplars == 0) == (variant == "cryostorm-no-exemplars")
