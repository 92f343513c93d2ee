"""Runs in the launcher: settings → the program's environment (`envmap`, `envformat`), then plan and exec.

`plan_launch` is pure; `exec_plan` replaces the launcher with the program (same PID).
"""

from cryostorm_run.launch.plan import LaunchError, LaunchPlan, exec_plan, plan_launch

__all__ = ["LaunchError", "LaunchPlan", "exec_plan", "plan_launch"]
