"""Runs inside the program (hook and facade alike): providers, samplers, processors, exporters.

Data flows `providers` (resource, sampler and propagators from `sampling`) → `signals` (one
builder per signal, processors with drop accounting) → `otlp` (lazy OTLP exporters, retries,
partial success) / `otlp_encode` (spans straight to wire bytes) / `pretty` (console) and
`logbridge` (stdlib `logging` → OpenTelemetry logs).

Same rule as `hook/`: never imports `config/`, `launch/`, `diagnose/`, `cli/`, pydantic, typer or rich.
"""
