"""common/runtime.py's classes are frozen dataclasses to the type checker and `_record` at run time (the
hook keeps `dataclasses` out of every process): the same behaviour, checked against the real thing.

The real dataclasses come from the module's own source executed with TYPE_CHECKING true.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cryostorm_run.common import runtime


def _with_real_dataclasses() -> ModuleType:
    source = Path(runtime.__file__).read_text(encoding="utf-8")
    assert "TYPE_CHECKING = False" in source
    module = ModuleType("runtime_real")
    sys.modules["runtime_real"] = module  # dataclasses looks its module up
    try:
        exec(compile(source.replace("TYPE_CHECKING = False", "TYPE_CHECKING = True", 1), "runtime_real", "exec"),
             module.__dict__)
    finally:
        del sys.modules["runtime_real"]
    return module


REAL = _with_real_dataclasses()
CLASSES = ("Batch", "SignalRuntime", "Runtime")


def _outcome(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        made = cls(*args, **kwargs)
    except Exception as exc:  # the kind of error and its message, not the traceback
        return ("error", type(exc).__name__, str(exc))
    return ("made", repr(made))


def test_the_real_module_does_use_dataclasses() -> None:
    assert all(dataclasses.is_dataclass(getattr(REAL, name)) for name in CLASSES)
    assert not any(dataclasses.is_dataclass(getattr(runtime, name)) for name in CLASSES)


@pytest.mark.parametrize("name", CLASSES)
def test_construction_repr_equality_hash_and_errors_as_a_frozen_dataclass(name: str) -> None:
    ours, real = getattr(runtime, name), getattr(REAL, name)
    fields = [f.name for f in dataclasses.fields(real)]
    assert list(ours.__annotations__) == fields
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}), ((7,), {}), (tuple(range(len(fields))), {}), (tuple(range(len(fields) + 1)), {}),
        ((), {fields[0]: "x"}), ((), {fields[-1]: 3}), ((1,), {fields[0]: 2}), ((), {"nope": 1}),
    ]
    for args, kwargs in calls:
        assert _outcome(ours, args, kwargs) == _outcome(real, args, kwargs), (args, kwargs)
    a, b, c = ours(), ours(), ours(9)
    ra, rb, rc = real(), real(), real(9)
    assert (a == b, a == c, a != c, a == 1) == (ra == rb, ra == rc, ra != rc, ra == 1)
    if name == "Batch":  # the other two hold dicts: unhashable, as with the dataclass
        assert hash(a) == hash(b) and (hash(a) == hash(c)) == (hash(ra) == hash(rc))
    else:
        with pytest.raises(TypeError):
            hash(ra)
        with pytest.raises(TypeError):
            hash(a)
    for obj in (a, ra):
        with pytest.raises(AttributeError):
            obj.__setattr__(fields[0], 1)
        with pytest.raises(AttributeError):
            obj.__delattr__(fields[0])


def test_default_factories_give_each_instance_its_own_and_leave_no_class_attribute() -> None:
    one, two = runtime.SignalRuntime(), runtime.SignalRuntime()
    assert one.headers == {} and one.headers is not two.headers and one.batch is not two.batch
    assert "headers" not in vars(runtime.SignalRuntime) and "headers" not in vars(REAL.SignalRuntime)
    assert runtime.SignalRuntime.exporter == REAL.SignalRuntime.exporter == "none"  # plain defaults stay
    assert runtime.Runtime().traces.enabled is False and runtime.Runtime().environment == ""
