"""``{{ params.x }}`` placeholders: found and resolved by a regular expression, never by Jinja.

A placeholder is a dotted path into a fixed context (``params``, ``resources``,
``instance``). Nothing is evaluated: no filters, no expressions, no attribute calls. A
string that is exactly one placeholder takes the value with its type (an integer stays
an integer); anywhere else the value is written as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_provider_hpcai.templates.errors import TemplateValidationError

__all__ = ["PLACEHOLDER_RE", "ROOTS", "check_text", "find_placeholders", "has_jinja", "resolve"]

ROOTS = ("params", "resources", "instance")
PLACEHOLDER_RE = re.compile(r"\{\{\s*((?:params|resources|instance)(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,8})\s*\}\}")
_JINJA_RE = re.compile(r"\{\{|\{%|\{#")


def has_jinja(text: str) -> bool:
    """Whether ``text`` holds an opening Jinja delimiter (``{{``, ``{%`` or ``{#``)."""
    return bool(_JINJA_RE.search(text))


def check_text(text: str, where: str) -> list[str]:
    """Return the placeholder paths in ``text``; raise if anything else looks like Jinja.

    :param text: a string from a manifest.
    :param where: where it came from (e.g. ``stages[0].args.argv[1]``), for the message.
    """
    paths = [m.group(1) for m in PLACEHOLDER_RE.finditer(text)]
    rest = PLACEHOLDER_RE.sub("", text)
    if has_jinja(rest):
        raise TemplateValidationError(
            f"{where}: {text!r} holds template syntax that is not a placeholder; only "
            "'{{ params.NAME }}', '{{ resources.FIELD }}' and '{{ instance.id }}' are supported "
            "(no filters, expressions or Jinja blocks)"
        )
    return paths


def find_placeholders(value: Any, where: str = "args") -> Iterator[tuple[str, str]]:
    """Yield ``(location, path)`` for every placeholder in a nested manifest value."""
    if isinstance(value, str):
        for path in check_text(value, where):
            yield where, path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and has_jinja(key):
                raise TemplateValidationError(f"{where}: keys cannot hold placeholders ({key!r})")
            yield from find_placeholders(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_placeholders(item, f"{where}[{index}]")


def _lookup(path: str, context: Mapping[str, Any], where: str) -> Any:
    node: Any = context
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise TemplateValidationError(
                f"{where}: placeholder '{{{{ {path} }}}}' has no value; give the parameter a value "
                "or a default in the template's schema"
            )
        node = node[part]
    if node is None:
        raise TemplateValidationError(f"{where}: placeholder '{{{{ {path} }}}}' is empty (null)")
    return node


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def resolve(value: Any, context: Mapping[str, Any], where: str = "args") -> Any:
    """Return ``value`` with every placeholder replaced from ``context``.

    :param value: a manifest value (string, number, list, mapping...).
    :param context: ``{"params": {...}, "resources": {...}, "instance": {...}}``.
    :param where: location for error messages.
    :raises TemplateValidationError: on an unknown placeholder or a missing value.
    """
    if isinstance(value, str):
        check_text(value, where)
        whole = PLACEHOLDER_RE.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1), context, where)
        return PLACEHOLDER_RE.sub(lambda m: _as_text(_lookup(m.group(1), context, where)), value)
    if isinstance(value, Mapping):
        return {key: resolve(item, context, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, context, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
