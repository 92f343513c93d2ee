"""cryostorm-run's hook: put first on PYTHONPATH by the launcher, imported by `site` at start-up.

Kept tiny on purpose. It chains to the `sitecustomize` it shadows (the user's or the
distribution's), steps aside quietly in an interpreter that cannot import cryostorm_run
(another virtualenv, the system Python), and never lets telemetry trouble break the program.
"""


def _cryostorm_hook() -> None:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    # 1. Chain: run the next sitecustomize on sys.path, as if we were not here.
    search = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec

        spec = PathFinder.find_spec("sitecustomize", search)
        if spec is not None and spec.loader is not None:
            module = module_from_spec(spec)
            sys.modules["sitecustomize"] = module
            spec.loader.exec_module(module)
    except Exception as exc:  # the user's sitecustomize failed: say so, as Python would
        sys.stderr.write(f"Error in sitecustomize (chained by cryostorm-run): {type(exc).__name__}: {exc}\n")

    # 2. Only the interpreter environment the launcher ran in is served. A foreign interpreter
    #    started by the program steps aside quietly; the program itself (same PID as the launcher,
    #    which exec'd it) is told, because it would otherwise run with no telemetry.
    expected = os.environ.get("_CRYOSTORM_PREFIX")
    if expected not in (None, sys.prefix):
        if os.environ.get("_CRYOSTORM_LAUNCHER_PID") == str(os.getpid()):
            # No sys.executable when the program's PATH does not hold the python it runs (`env -i`).
            who = sys.executable or "its python"
            sys.stderr.write(
                f"cryostorm: NOT instrumented: {who} (prefix {sys.prefix}) is not the Python "
                f"environment cryostorm-run is installed in ({expected}); run that environment's python, "
                "or install cryostorm-run into this one\n"
            )
        return
    try:
        from cryostorm_run.hook.bootstrap import initialize
    except Exception:
        return  # cryostorm_run is not importable here: step aside quietly
    initialize()


_cryostorm_hook()
del _cryostorm_hook
