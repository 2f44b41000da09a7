"""JSON Schema ``pattern`` with the meaning JSON Schema gives it (ECMA-262), not Python's.

``jsonschema`` checks ``pattern`` with :func:`re.search`, where ``$`` also matches before a
final newline: ``pattern: "^[a-z]+$"`` accepted ``"abc\\n"``, and a template parameter with a
trailing newline then reached a stage. In ECMA-262 (without the ``m`` flag) ``$`` matches at
the very end only, which is Python's ``\\Z``. :func:`to_python_regex` rewrites each ``$`` outside
a character class that way; :func:`validator_class` is Draft 2020-12 with a ``pattern`` keyword
that uses it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["compile_schema_pattern", "ecma_pattern", "to_python_regex", "validator_class"]


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


@functools.lru_cache(maxsize=512)
def compile_schema_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled Python form of a JSON Schema ``pattern`` (cached)."""
    return re.compile(to_python_regex(pattern))


def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """A ``jsonschema`` keyword function for ``pattern`` with ECMA-262's ``$``."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not compile_schema_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def validator_class() -> Any:
    """``Draft202012Validator`` whose ``pattern`` keyword reads ``$`` as ECMA-262 does."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    return extend(Draft202012Validator, {"pattern": ecma_pattern})
