"""Runs inside the program, when the program imports it: the `Telemetry` facade and `traced`.

It builds providers through `export/` (or reuses the ones the hook installed). Only
`Telemetry.from_settings` reaches into `config/` and `launch/envmap` (the caller passes a pydantic
settings object, so pydantic is already loaded); nothing else here imports pydantic.
"""
