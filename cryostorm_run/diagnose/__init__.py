"""Runs in the launcher only: `check-config --probe` (`probe`, `probe_export`), `doctor` and `bootstrap`
(`installer`: pip or uv)."""
