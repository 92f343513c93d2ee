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
    program = os.environ.get("_CRYOSTORM_LAUNCHER_PID") == str(os.getpid())
    # No sys.executable when the program's PATH does not hold the python it runs (`env -i`).
    who = sys.executable or "its python"
    # The same environment through another path (a `current -> releases/42` symlink) is the same one.
    if expected not in (None, sys.prefix) and os.path.realpath(expected) != os.path.realpath(sys.prefix):
        if program:
            own = os.path.join(sys.prefix, "bin", "cryostorm-run")  # the program's environment has its own install
            fix = (f"run this environment's own launcher, {own}" if os.path.exists(own)
                   else "run that environment's python, or install cryostorm-run into this one")
            sys.stderr.write(
                f"cryostorm: NOT instrumented: {who} (prefix {sys.prefix}) is not the Python "
                f"environment cryostorm-run is installed in ({expected}); {fix}\n"
            )
        return
    try:
        from cryostorm_run.hook.bootstrap import initialize
    except Exception as exc:
        if program:  # the program itself: it would otherwise run with no telemetry and no word
            why = ("; user site-packages are off (-s or PYTHONNOUSERSITE), where pip install --user puts "
                   "cryostorm-run: drop that, or install it into the environment" if sys.flags.no_user_site else "")
            sys.stderr.write(f"cryostorm: NOT instrumented: {who} cannot import cryostorm_run "
                             f"({type(exc).__name__}: {exc}){why}\n")
        return  # a foreign interpreter the program starts: step aside quietly
    initialize()


_cryostorm_hook()
del _cryostorm_hook
