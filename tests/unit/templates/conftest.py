"""Fixtures for the template-repository tests: a fresh repository and the built-in templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import DEFAULT_FACTORY_ALLOWLIST, TemplateSettings

ROOT = Path(__file__).resolve().parents[3]
BUILTIN = ROOT / "airflow_provider_hpcai/templates/builtin"

MINIMAL = """\
name: {name}
version: {version}
title: {title}
parameters:
  type: object
  additionalProperties: false
  required: [word]
  properties:
    word: {{type: string, maxLength: 50}}
    count: {{type: integer, minimum: 1, maximum: 5, default: 1}}
stages:
  - id: say
    kind: bash
    args:
      argv: [echo, "{{{{ params.word }}}}", "{{{{ params.count }}}}"]
  - id: end
    kind: empty
    depends_on: [say]
"""


def _minimal(name: str = "mini", version: str = "1.0.0", title: str = "Mini") -> str:
    return MINIMAL.format(name=name, version=version, title=title)


@pytest.fixture()
def minimal():
    """``minimal(name=, version=, title=)``: a small valid manifest (bash + empty stages)."""
    return _minimal


@pytest.fixture()
def repo(tmp_path: Path) -> TemplateRepository:
    settings = TemplateSettings(root=tmp_path / "repo", factory_allowlist=DEFAULT_FACTORY_ALLOWLIST)
    return TemplateRepository(settings.root, settings)


def _tree(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"
    }


@pytest.fixture()
def tree():
    """``tree(root)``: every file under ``root`` (but the lock) with its bytes: proves nothing changed."""
    return _tree
