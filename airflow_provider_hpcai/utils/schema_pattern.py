"""JSON Schema ``pattern`` with the meaning JSON Schema gives it, in linear time.

``jsonschema`` checks ``pattern`` with Python's :func:`re.search`, which differs from JSON
Schema (ECMA-262) in two ways that matter here:

* ``$`` also matches before a final newline, so ``pattern: "^[a-z]+$"`` accepted ``"abc\\n"``
  and a template parameter with a trailing newline reached a stage;
* ``re`` backtracks, so a pattern a template publisher wrote, such as ``^(a+)+$``, can hold the
  api-server for minutes on one parameter value.

:func:`ecma_pattern` (the ``pattern`` keyword of :func:`validator_class`) therefore runs patterns
on the Rust ``regex`` engine that pydantic-core ships: linear time, and ``$`` is the very end.
Patterns that engine cannot compile (look-around, back-references) fall back to ``re`` with
each ``$`` rewritten to ``\\Z`` (:func:`to_python_regex`); the package's own patterns are checked
for backtracking by the test suite, and :func:`linear_pattern_problem` lets publishing refuse
such patterns in templates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ecma_pattern", "linear_pattern_problem", "to_python_regex", "validator_class"]


def to_python_regex(pattern: str) -> str:
    """``pattern`` with every unescaped ``$`` outside ``[...]`` replaced by ``\\Z``."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            # Python reads a "]" right after "[" or "[^" as a literal, not as the end of the class.
            opening = "[^" if pattern[index + 1 : index + 2] == "^" else "["
            index += len(opening)
            if pattern[index : index + 1] == "]":
                opening += "]"
                index += 1
            out.append(opening)
            in_class = True
            continue
        elif char == "$":
            char = r"\Z"
        out.append(char)
        index += 1
    return "".join(out)


def _rust_validator(pattern: str) -> Any:
    from pydantic_core import SchemaValidator, core_schema

    return SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))


def linear_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot run on the linear-time engine (``None`` when it can)."""
    from pydantic_core import SchemaError

    try:
        _rust_validator(pattern)
    except SchemaError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip().startswith("error:")]
        return (lines[-1] if lines else str(err).splitlines()[-1]).removeprefix("error: ")
    return None


@functools.lru_cache(maxsize=512)
def _matcher(pattern: str) -> Callable[[str], bool]:
    """A search-semantics test for ``pattern``: Rust's engine when it compiles, else ``re`` with ECMA's ``$``."""
    from pydantic_core import SchemaError, ValidationError

    try:
        validator = _rust_validator(pattern)
    except SchemaError:
        # The package's own schemas (checked by the ReDoS test as schemas) and templates published
        # before patterns had to compile on Rust's engine.
        compiled = re.compile(to_python_regex(pattern))  # pattern is data: a schema's
        return compiled.search  # type: ignore[return-value]

    def matches(text: str) -> bool:
        try:
            validator.validate_python(text)
        except ValidationError:
            return False
        return True

    return matches


def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """A ``jsonschema`` keyword function for ``pattern`` (see the module's docs)."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _matcher(pattern)(instance):
        shown = repr(instance) if len(instance) <= 80 else f"{instance[:60]!r}... ({len(instance)} characters)"
        yield ValidationError(f"{shown} does not match {pattern!r}")


@functools.cache
def validator_class() -> Any:
    """``Draft202012Validator`` whose ``pattern`` keyword is :func:`ecma_pattern`."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    return extend(Draft202012Validator, {"pattern": ecma_pattern})
