"""Runs inside every Python process of the program: the `sitecustomize` hook and what it sets up.

`pythonpath/` is the directory the launcher puts first on `PYTHONPATH`; its `sitecustomize.py` calls
`bootstrap.initialize()`, which loads the configurator and distro (`distro`, by their entry points,
read by `entrypoints`), registers lazy auto-instrumentation (`instrument`, `fastapi_native`) and routes
the SDK's own warnings to stderr (`sdk_warnings`).

Must stay cheap and must never break the program: never imports `config/`, `launch/`, `diagnose/`,
`cli/`, pydantic, typer or rich (enforced by tests/test_boundaries.py).
"""
