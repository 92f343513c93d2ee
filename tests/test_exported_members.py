"""`cryostorm_run.__all__` is the public API: sorted, importable, complete, and nothing more."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import cryostorm_run

PACKAGE = Path(cryostorm_run.__file__).parent


def test_all_is_sorted_and_unique() -> None:
    assert cryostorm_run.__all__ == sorted(set(cryostorm_run.__all__))


def test_every_exported_name_is_importable_from_its_module() -> None:
    where = cryostorm_run._WHERE
    assert set(where) == set(cryostorm_run.__all__)
    for name in cryostorm_run.__all__:
        value = getattr(cryostorm_run, name)
        assert value is getattr(importlib.import_module(where[name]), name), name
    namespace: dict[str, object] = {}
    exec("from cryostorm_run import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(cryostorm_run.__all__)


def test_where_keeps_module_order_and_is_sorted_within_each_module() -> None:
    modules = list(dict.fromkeys(cryostorm_run._WHERE.values()))
    assert modules == sorted(modules)
    for module in modules:
        names = [name for name, home in cryostorm_run._WHERE.items() if home == module]
        assert names == sorted(names), module


def test_type_checking_imports_match_the_exports() -> None:
    # The TYPE_CHECKING block is what type checkers and IDEs see; it must list the same names.
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                imported.update({alias.name: stmt.module for alias in stmt.names})
    assert imported == cryostorm_run._WHERE


def test_nothing_public_is_missing() -> None:
    # Every name a public module declares public is exported from the package.
    for module in ("cryostorm_run.settings", "cryostorm_run.facade.telemetry", "cryostorm_run.launch"):
        declared = getattr(importlib.import_module(module), "__all__", None)
        if declared is None:
            continue
        missing = sorted(set(declared) - set(cryostorm_run.__all__))
        assert missing == [], f"{module} declares {missing} public but cryostorm_run does not export them"
    enums = importlib.import_module("cryostorm_run.config.enums")
    settings_enums = [
        n
        for n, v in vars(enums).items()
        if isinstance(v, type) and v.__module__ == enums.__name__ and not n.startswith("_")
    ]
    assert sorted(set(settings_enums) - set(cryostorm_run.__all__)) == []


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        cryostorm_run.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
