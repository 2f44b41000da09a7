"""A checker for regular expressions that backtrack super-linearly (ReDoS).

Python's ``re`` backtracks, and it holds the interpreter while it does (a 16 KB string against
``\\s*(...)?\\s*\\Z`` froze the whole api-server for seconds). This module finds every pattern
the package uses and attacks each one with inputs built from its own structure:

* :func:`package_patterns` collects them: module-level compiled patterns (by import), every
  ``re.<function>(...)`` call site and every ``pattern=`` keyword (by parsing the source), and
  every ``"pattern"`` in a JSON Schema the package or a shipped template declares.
* :func:`attack_inputs` walks the parsed pattern (``re._parser``): for each repeat it builds
  the shortest text that reaches it, pumps one of the strings the repeat accepts many times,
  and ends with a character that makes the match fail, which is what forces backtracking.
* :func:`slowest_probe` grows the pumped part (in small steps first, so an exponential pattern
  is caught at a few dozen characters, then doubling to 32k characters) and stops as soon as
  one search takes longer than the limit. A linear pattern searches 32k characters in well
  under a millisecond; a quadratic one needs seconds, so the margin is wide on a busy machine.
"""

from __future__ import annotations

import ast
import importlib
import re
import re._constants as sre  # the parser's node names: the structure the inputs are built from
import re._parser as sre_parse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DATA_MARK", "FoundPattern", "attack_inputs", "package_patterns", "schema_patterns", "slowest_probe"]

#: A comment on a regex call whose pattern is data, not code: the checker skips that call.
DATA_MARK = "# pattern is data:"
_RE_FUNCTIONS = {"compile", "match", "fullmatch", "search", "sub", "subn", "findall", "finditer", "split"}
_SUFFIXES = ("", "\x00", "!", "\n", "x", " ", "-", ":", "}")
_SAMPLE_FOR_CATEGORY = {
    sre.CATEGORY_DIGIT: "1",
    sre.CATEGORY_NOT_DIGIT: "a",
    sre.CATEGORY_SPACE: " ",
    sre.CATEGORY_NOT_SPACE: "a",
    sre.CATEGORY_WORD: "a",
    sre.CATEGORY_NOT_WORD: " ",
}
_CANDIDATES = "a1 .-_:/Z\t@,+=!x"


@dataclass(frozen=True)
class FoundPattern:
    """One pattern and where it was found (``file:line`` or ``module.NAME``)."""

    where: str
    pattern: str
    flags: int = 0
    #: How the pattern is applied: ``match``, ``fullmatch`` or ``search`` (also standing for
    #: findall, finditer, sub and split, and for patterns handed on, e.g. to JSON Schema).
    methods: frozenset[str] = frozenset({"search"})

    def compiled(self) -> re.Pattern[str]:
        """The pattern compiled with its flags."""
        return re.compile(self.pattern, self.flags)


# ----------------------------------------------------------------------------- collecting
def package_patterns(package_dir: Path, package: str) -> tuple[list[FoundPattern], list[str]]:
    """Every pattern in ``package`` (a folder of Python modules), and the call sites that could not be read.

    :param package_dir: the package's folder.
    :param package: its import name.
    :return: ``(patterns, unreadable)``; ``unreadable`` lists ``file:line`` of regex calls whose
        pattern is neither a literal nor a module-level name, so the caller can fail on them.
    """
    found: list[FoundPattern] = []
    unreadable: list[str] = []
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(package_dir.rglob("*.py"))}
    everything = "\n".join(sources.values())
    for path, source in sources.items():
        if "re." not in source and "pattern" not in source:
            continue
        rel = path.relative_to(package_dir.parent)
        module_name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        module: Any = None
        if re.search(r"\bre\.compile\(|\"pattern\"|'pattern'", source):
            module = importlib.import_module(module_name)
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                    found.append(FoundPattern(f"{module_name}.{name}", value.pattern, value.flags,
                                              _uses(name, everything)))
                elif isinstance(value, dict):
                    found += [FoundPattern(f"{module_name}.{name}{w}", p) for w, p in schema_patterns(value)]
        tree = ast.parse(source, filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{rel}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "pattern" and isinstance(keyword.value, ast.Constant):
                    found.append(FoundPattern(where, str(keyword.value.value)))
            func = node.func
            if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "re"
                    and func.attr in _RE_FUNCTIONS and node.args):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if func.attr == "compile" and module is not None and _is_module_level(tree, node):
                    continue  # a module-level compiled pattern: collected above with its uses
                method = func.attr if func.attr in ("match", "fullmatch") else "search"
                found.append(FoundPattern(where, first.value, _literal_flags(node), frozenset({method})))
            elif isinstance(first, ast.Name) and module is not None and isinstance(
                getattr(module, first.id, None), (str, re.Pattern)
            ):
                continue  # a module-level name: collected above
            elif DATA_MARK in source.splitlines()[node.lineno - 1]:
                continue  # a pattern that is data (e.g. from a template), handled where it is used
            elif func.attr != "compile" or not _is_module_level(tree, node):
                unreadable.append(where)
    return found, unreadable


def _uses(name: str, source: str) -> frozenset[str]:
    """How a module-level pattern is used anywhere in the package (unknown uses count as search)."""
    uses = set()
    for match in re.finditer(rf"\b{re.escape(name)}\b(\.\w+\()?", source):
        method = (match.group(1) or "")[1:-1]
        if method in ("match", "fullmatch"):
            uses.add(method)
        elif not source[: match.start()].endswith(("def ", "class ")) and not _is_definition(source, match.end()):
            uses.add("search")
    return frozenset(uses) or frozenset({"search"})


def _is_definition(source: str, end: int) -> bool:
    return re.match(r"\s*(?::[^=\n]*)?=(?!=)", source[end:end + 200]) is not None


def _literal_flags(call: ast.Call) -> int:
    exprs = [k.value for k in call.keywords if k.arg == "flags"]
    if call.func.attr in ("compile", "findall", "finditer", "split", "match", "fullmatch", "search"):  # type: ignore[attr-defined]
        exprs += call.args[1:2] if call.func.attr == "compile" else call.args[2:3]  # type: ignore[attr-defined]
    flags = 0
    for expr in exprs:
        for sub in ast.walk(expr):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "re":
                flags |= int(getattr(re, sub.attr))
    return flags


def _is_module_level(tree: ast.Module, call: ast.Call) -> bool:
    return any(isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is call for stmt in tree.body)


def schema_patterns(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """``(where, pattern)`` for every ``"pattern"`` keyword in a JSON Schema (nested dicts and lists)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield f"{where}/pattern", value
            else:
                yield from schema_patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from schema_patterns(item, f"{where}/{index}")


# ----------------------------------------------------------------------------- building inputs
def attack_inputs(pattern: str, flags: int = 0) -> list[tuple[str, str]]:
    """``(prefix, pump)`` pairs: text that reaches a repeat, and a string that repeat accepts.

    The caller appends ``pump`` many times and a failing character after ``prefix``.
    """
    parsed = sre_parse.parse(pattern, flags)
    probes: dict[tuple[str, str], None] = {}
    _walk(list(parsed), "", probes)
    return list(probes)


def _walk(items: list[Any], prefix: str, probes: dict[tuple[str, str], None]) -> None:
    for index, (op, arg) in enumerate(items):
        here = prefix + "".join(_sample(i) for i in items[:index])
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            _low, high, body = arg
            if high == sre.MAXREPEAT or high > 1:
                for pump in _pumps(list(body)):
                    probes[(here, pump)] = None
            _walk(list(body), here, probes)
        elif op == sre.SUBPATTERN:
            _walk(list(arg[-1]), here, probes)
        elif op in (sre.ATOMIC_GROUP,):
            _walk(list(arg), here, probes)
        elif op == sre.BRANCH:
            for alternative in arg[1]:
                _walk(list(alternative), here, probes)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(list(arg[1]), here, probes)


def _pumps(body: list[Any]) -> list[str]:
    """Strings one pass of a repeat's body matches: its shortest sample and each single character it starts with."""
    pumps = []
    sample = "".join(_sample(i) for i in body)
    if sample:
        pumps.append(sample)
    pumps += _first_chars(body)
    return list(dict.fromkeys(pumps)) or ["a"]


def _first_chars(items: list[Any]) -> list[str]:
    chars: list[str] = []
    for op, arg in items:
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            chars += _first_chars(list(arg[2]))
            if arg[0] > 0:
                return chars
            continue
        if op == sre.SUBPATTERN:
            return chars + _first_chars(list(arg[-1]))
        if op == sre.BRANCH:
            for alternative in arg[1]:
                chars += _first_chars(list(alternative))
            return chars
        return chars + _accepted((op, arg))
    return chars


def _accepted(item: Any) -> list[str]:
    """Characters a single-character item accepts (a few representatives)."""
    matcher = re.compile(_unparse_one(item), re.DOTALL)
    found = [c for c in _CANDIDATES if matcher.fullmatch(c)][:4]
    return found or [chr(c) for c in range(1, 0x3000) if matcher.fullmatch(chr(c))][:1] or ["\x01"]


def _unparse_one(item: Any) -> str:
    op, arg = item
    if op == sre.LITERAL:
        return re.escape(chr(arg))
    if op == sre.NOT_LITERAL:
        return f"[^{re.escape(chr(arg))}]"
    if op == sre.ANY:
        return "."
    if op == sre.IN:
        return "[" + "".join(_unparse_set_item(i) for i in arg) + "]"
    return "(?!)"


def _unparse_set_item(item: Any) -> str:
    op, arg = item
    if op == sre.NEGATE:
        return "^"
    if op == sre.LITERAL:
        return re.escape(chr(arg))
    if op == sre.RANGE:
        return f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}"
    if op == sre.CATEGORY:
        return {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_SPACE: r"\s",
                sre.CATEGORY_NOT_SPACE: r"\S", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}.get(arg, "")
    return ""


def _sample(item: Any) -> str:
    """The shortest text one item matches (the first alternative of a branch)."""
    op, arg = item
    if op == sre.LITERAL:
        return chr(arg)
    if op in (sre.NOT_LITERAL, sre.ANY):
        return "a" if arg != ord("a") else "b"
    if op == sre.IN:
        return _accepted(item)[0]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        return "".join(_sample(i) for i in arg[2]) * arg[0]
    if op == sre.SUBPATTERN:
        return "".join(_sample(i) for i in arg[-1])
    if op == sre.ATOMIC_GROUP:
        return "".join(_sample(i) for i in arg)
    if op == sre.BRANCH:
        return "".join(_sample(i) for i in arg[1][0])
    if op == sre.CATEGORY:
        return _SAMPLE_FOR_CATEGORY.get(arg, "a")
    return ""  # anchors, assertions, group references


# ----------------------------------------------------------------------------- timing
#: Lengths of the pumped part: small steps (exponential blow-up shows within a few dozen
#: characters), then doubling (polynomial blow-up shows within a few thousand).
LENGTHS = (*range(4, 41, 4), *(2**k for k in range(6, 16)))


def slowest_probe(found: FoundPattern, limit_s: float) -> tuple[float, str]:
    """The longest single search (or match, as the pattern is used) over all attack inputs, and its input.

    Stops growing an input as soon as one search takes longer than ``limit_s``.
    """
    compiled = found.compiled()
    apply = [getattr(compiled, method) for method in sorted(found.methods)]
    worst = (0.0, "")
    for prefix, pump in attack_inputs(found.pattern, found.flags):
        for suffix in _SUFFIXES:
            for length in LENGTHS:
                text = prefix + pump * max(1, length // len(pump)) + suffix
                start = time.perf_counter()
                for method in apply:
                    method(text)
                elapsed = time.perf_counter() - start
                if elapsed > worst[0]:
                    worst = (elapsed, text)
                if elapsed > limit_s:
                    return worst
    return worst
