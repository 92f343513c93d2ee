"""pydantic's validation errors as problems a person can act on: each named by the input as the user wrote it,
its value as written (secrets masked), what is allowed and how to fix it.

No class name of the model (`TracingConfig`) and no branch of a union reaches the user: a group of settings
given one value says which settings it holds; a value no type of a union takes is one problem, not one per type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryostorm_run.config.names import unknown_setting
from cryostorm_run.config.sources import (
    DEFAULT,
    DELIMITER,
    PREFIX,
    Origin,
    Path_,
    Problem,
    is_secret_name,
    is_secret_path,
    mask,
    origin_of,
)

# pydantic's error types for a value no branch of `str | bool | int | float` takes, one error per branch.
_BRANCH_TYPES = {"string_type", "bool_type", "bool_parsing", "int_type", "int_parsing", "float_type", "float_parsing"}
_READ_AS_KINDS = ("otel_env", "cryostorm_env", "env_file")  # inputs written as text: shown as written


def explain_errors(errors: Sequence[Any], data: Mapping[str, Any], origins: Mapping[Path_, Origin],
                   written: Mapping[str, str] | None = None) -> list[Problem]:
    """Every error as a problem; `written`: each variable's text as the user wrote it."""
    problems = []
    seen_unions: set[tuple[str, ...]] = set()
    for err in _per_input(errors, origins):
        loc = _path(err)
        branches = [e for e in errors if _path(e) == loc and e["type"] in _BRANCH_TYPES]
        if len(branches) > 1:  # `additional_attributes={"a": [1, 2]}`: one problem, not one per type tried
            if loc in seen_unions:
                continue
            seen_unions.add(loc)
            got = type(err.get("input")).__name__
            union = {**err, "type": "union", "msg": f"{_key(err)}must be a string, true/false or a number, got {got}"}
            problems.append(_explain(union, data, origins, written or {}))
            continue
        problems.append(_explain(err, data, origins, written or {}))
    return problems


def _path(err: Mapping[str, Any]) -> tuple[str, ...]:
    loc = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
    if err["type"] in _BRANCH_TYPES and loc and loc[-1] in ("str", "bool", "int", "float"):
        loc = loc[:-1]  # the branch of `str | bool | int | float` that was tried
    # pydantic reports union/tagged branches in loc (e.g. 'int', 'function-after[...]'): drop them.
    return tuple(p for p in loc if p.isidentifier() or ("-" in p and not p.startswith("function")))


def _key(err: Mapping[str, Any]) -> str:
    """`'a': ` for a mapping's entry (an attribute, a header), else nothing."""
    loc = _path(err)
    return f"{loc[-1]!r}: " if len(loc) > 1 and loc[-2] in ("additional_attributes", "headers") else ""


def _per_input(errors: Sequence[Any], origins: Mapping[Path_, Origin]) -> Iterator[Any]:
    """pydantic's errors, an unknown section (CRYOSTORM_TRACES__ENABLED: there is no `traces`) as one per
    input beneath it, so each is named, shown and matched on its own."""
    for err in errors:
        path = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
        below = sorted(p for p in origins if len(p) > len(path) and p[:len(path)] == path)
        if err["type"] == "extra_forbidden" and path not in origins and below:
            yield from ({**err, "loc": p} for p in below)
        else:
            yield err


def _explain(err: Mapping[str, Any], data: Mapping[str, Any], origins: Mapping[Path_, Origin],
             written: Mapping[str, str] | None = None) -> Problem:
    path, name, origin, raw, text, shown, secret = _subject(err, data, origins, written or {})
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return unknown_setting(name, origin, shown)
    if kind == "enum":
        item = err.get("input")
        which = f": {item!r}" if isinstance(item, str) and not secret and item != shown else ""
        expected = str(ctx.get("expected", "")).replace("'", "")
        if any(isinstance(p, int) for p in err["loc"]):  # a list's item: never `none` (an empty list is none)
            names = [n for n in re.split(r", | or ", expected) if n != "none"]
            expected = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
        return Problem(name, shown, f"not an allowed value{which}", f"allowed: {expected}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(name, shown, f"{'.'.join(path)} is a group of settings, not one value",
                       f"set the ones you mean: {_examples(path)}")
    message = str(err["msg"])
    if secret:
        message = _scrub(message.split(", input_value=", maxsplit=1)[0], raw)
    message = message.removeprefix("Value error, ")
    if kind == "string_type" and _key(err):
        message = f"{_key(err)}{message}"
    if kind in _BOUNDS and text is not None and not secret and raw is not _MISSING and str(raw) != text.strip():
        message += f" (read as {raw!r})"  # OTEL_EXPORTER_OTLP_TIMEOUT=-1 is -1000 milliseconds
    return Problem(name, shown, message, _hint(kind, ctx, path))


_BOUNDS = ("greater_than", "greater_than_equal", "less_than_equal", "less_than")


def _subject(err: Mapping[str, Any], data: Mapping[str, Any], origins: Mapping[Path_, Origin],
             written: Mapping[str, str]) -> tuple[Path_, str, Origin, Any, str | None, str | None, bool]:
    """What the error is about: (path, the inputs' names, origin, value, its text as written, as shown, secret)."""
    path = _path(err)
    origin = origin_of(path, origins)
    raw = _lookup(data, path)
    if origin is DEFAULT:
        # A whole-model check (e.g. batch_size > max_queue_size): name the inputs beneath it.
        under = sorted({o for p, o in origins.items() if p[: len(path)] == path}, key=lambda o: o.describe())
        # A check over a pair ("client_certificate_file and client_key_file must be set together"): the inputs
        # of the settings it names, not every input of the group (its headers too).
        named = [o for o in under if any(re.search(rf"\b{re.escape(p[-1])}\b", str(err["msg"]))
                                         for p, found in origins.items() if found == o)]
        under = named or under
        name = ", ".join(o.describe() for o in under) or PREFIX + DELIMITER.join(p.upper() for p in path)
        if len(under) == 1:  # one input beneath (CRYOSTORM_COLLECTOR__HOST): it is what to show
            origin = under[0]
            path = next(p for p, o in origins.items() if o == origin)
            raw = _lookup(data, path)
    else:
        name = origin.describe()
    secret = is_secret_path(path) or is_secret_name(origin.name)
    text = written.get(origin.name) if origin.kind in _READ_AS_KINDS else None
    if text is None and (isinstance(raw, Mapping) or raw is _MISSING):
        return path, name, origin, raw, text, None, secret  # a group of values: each named above, may be secret
    # Problem makes it printable: URL secrets masked, control characters escaped, shortened.
    plain = text if text is not None else (
        raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else repr(raw))
    return path, name, origin, raw, text, _masked(plain, path) if secret else plain, secret


def _hint(kind: str, ctx: Mapping[str, Any], path: Path_) -> str:
    if kind in _BOUNDS:
        return _bounds_hint(kind, ctx)
    if kind in ("bool_parsing", "bool_type"):
        return "allowed: true, false"
    if kind in ("int_parsing", "float_parsing", "int_from_float"):
        return _number_hint(path[-1] if path else "")
    if kind == "string_too_short":  # an empty value: pydantic's message says what is allowed, not the fix
        return "give it a value, or leave it out for the default"
    return ""


def _examples(path: Path_) -> str:
    """The first settings of the group at `path`, dotted (`tracing.enabled, tracing.exporter_type, ...`)."""
    from cryostorm_run.config.names import iter_leaf_names

    env = PREFIX + DELIMITER.join(p.upper() for p in path) + DELIMITER
    leaves = [n[len(env):].lower() for n in iter_leaf_names() if n.startswith(env) and DELIMITER not in n[len(env):]]
    return ", ".join(f"{'.'.join(path)}.{leaf}" for leaf in leaves[:3]) + (", ..." if len(leaves) > 3 else "")


def _scrub(message: str, raw: Any) -> str:
    """A validator's message may quote a piece of a secret input (`got 'Bearer ...'`): mask every piece
    that could be a value; header names stay readable."""
    if not isinstance(raw, str):
        return message
    from cryostorm_run.common.shown import mask_pair_values

    return mask_pair_values(message, raw)


def _masked(raw: Any, path: Path_) -> str:
    """A secret input as shown: a header list keeps its names (`api-key=****,****`), anything else is ****."""
    if isinstance(raw, str) and "headers" in path and "=" in raw:
        from cryostorm_run.common.shown import mask_pairs

        return mask_pairs(raw)
    return mask(raw)


def _number_hint(name: str) -> str:
    if name == "sample_rate":
        return "use a ratio from 0 to 1, e.g. 0.25 to keep a quarter of the traces"
    if name == "port":
        return "use a port number, e.g. 4317"
    if name.endswith("_millis"):
        return "use a plain number of milliseconds, e.g. 5000"
    return "use a plain number, e.g. 512"


def _bounds_hint(kind: str, ctx: Mapping[str, Any]) -> str:
    words = {"greater_than": "> ", "greater_than_equal": ">= ", "less_than": "< ", "less_than_equal": "<= "}
    bound = ctx.get("gt", ctx.get("ge", ctx.get("lt", ctx.get("le"))))
    return f"allowed: {words[kind]}{bound}"


_MISSING = object()


def _lookup(data: Any, path: Path_) -> Any:
    node = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node
