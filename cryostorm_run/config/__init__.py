"""Runs in the launcher (and in `Telemetry.from_settings`): the settings model, its sources and checks.

May import pydantic. Never imported by `hook/` or `export/`, which run inside every process of the
program. Internal: the public names are re-exported by `cryostorm_run` and `cryostorm_run.settings`.
"""
