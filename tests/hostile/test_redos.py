"""No regular expression in the package backtracks super-linearly (ReDoS, issue 20 finding 1).

Every pattern the package compiles, calls ``re`` with, declares as a ``pattern=`` or puts in a
JSON Schema (and every ``pattern`` in the templates shipped in ``templates/``) is attacked with
inputs built from its own structure (see :mod:`tests.hostile.redos`). Each search must finish in
well under the time a quadratic pattern needs for 32k characters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.redos import FoundPattern, package_patterns, schema_patterns, slowest_probe

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_provider_hpcai"
#: A linear search over 32k characters takes well under a millisecond; the old memory pattern
#: took 2.7 s for 16k. A limit far from both keeps the test steady on a loaded machine.
LIMIT_S = 0.25


def _shipped_template_patterns() -> list[FoundPattern]:
    from airflow_provider_hpcai.templates.manifest import load_yaml

    found = []
    for path in sorted([*ROOT.glob("templates/*/template.yaml"), *PACKAGE.rglob("template.yaml")]):
        manifest = load_yaml(path.read_text(encoding="utf-8"))
        found += [FoundPattern(f"{path.relative_to(ROOT)}{w}", p) for w, p in schema_patterns(manifest)]
    return found


PATTERNS, UNREADABLE = package_patterns(PACKAGE, "airflow_provider_hpcai")
ALL = sorted(set(PATTERNS) | set(_shipped_template_patterns()), key=lambda f: f.where)


def test_the_checker_finds_the_patterns_it_should() -> None:
    """Coverage: module-level compiled patterns, literal call sites, schema and ``pattern=`` keywords."""
    wheres = {f.where for f in ALL}
    assert {"airflow_provider_hpcai.resources._MEM_RE", "airflow_provider_hpcai.templates.manifest_schema.SEMVER_RE",
            "airflow_provider_hpcai.spec._ARRAY_RE"} <= wheres
    assert any(w.startswith("airflow_provider_hpcai/slurm/commands.py:") for w in wheres)
    assert any(w.startswith("airflow_provider_hpcai.templates.manifest_schema.MANIFEST_SCHEMA/") for w in wheres)
    assert any("param-sweep/template.yaml/" in w for w in wheres)
    assert len(ALL) >= 40
    assert UNREADABLE == [], f"regex calls whose pattern the checker cannot see (use a literal or a module-level name): {UNREADABLE}"


@pytest.mark.parametrize("pattern", [
    r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*\Z",  # the memory pattern of issue 20
    r"^(a+)+$",
    r"^(\w+\s?)*$",
    r"^(a|aa)+\Z",
    r"^\d*\d*x",
    r"\s*#",
])
def test_the_checker_catches_known_redos_patterns(pattern: str) -> None:
    elapsed, _text = slowest_probe(FoundPattern("known bad", pattern), LIMIT_S)
    assert elapsed > LIMIT_S, f"{pattern!r} should be slow; the worst input took {elapsed:.4f}s"


@pytest.mark.parametrize("found", ALL, ids=[f.where for f in ALL])
def test_no_pattern_backtracks_super_linearly(found: FoundPattern) -> None:
    elapsed, text = slowest_probe(found, LIMIT_S)
    shown = text if len(text) < 60 else f"{text[:40]!r}... ({len(text)} chars)"
    assert elapsed <= LIMIT_S, (
        f"{found.where}: {found.pattern!r} took {elapsed:.2f}s on {shown}: it backtracks; make the parts "
        "that repeat unable to match the same characters, bound them, or cap the input length first"
    )


def test_memory_from_a_viewer_sized_input_is_refused_at_once() -> None:
    """The request of issue 20: a digit, 16,000 spaces and a letter."""
    import time

    from airflow_provider_hpcai.exceptions import InvalidJobSpecError
    from airflow_provider_hpcai.resources import parse_memory

    start = time.perf_counter()
    with pytest.raises(InvalidJobSpecError, match="is not a size"):
        parse_memory("1" + " " * 16000 + "x")
    assert time.perf_counter() - start < 0.05
