"""Runs in the launcher only: `check-config --probe` (`probe`, `probe_export`) and `doctor`."""
