"""docs/install.md stays complete: every [hpcai] option and every extra is documented."""

from __future__ import annotations

import tomllib
from pathlib import Path

from airflow_provider_hpcai.config import CONFIG_OPTIONS
from airflow_provider_hpcai.utils.extras import EXTRAS

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "install.md").read_text()


def test_every_hpcai_option_is_in_the_table() -> None:
    missing = [key for key in CONFIG_OPTIONS if f"| `{key}` |" not in DOC]
    assert not missing, f"add these [hpcai] options to docs/install.md section 6: {missing}"


def test_every_extra_is_documented_and_known_to_the_error_messages() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    extras -= {"all", "test"}
    assert extras == set(EXTRAS), "utils/extras.py EXTRAS and pyproject.toml's extras differ"
    missing = [extra for extra in extras if f"| `{extra}` |" not in DOC]
    assert not missing, f"add these extras to docs/install.md section 1: {missing}"


def test_readme_links_the_install_guide() -> None:
    assert "docs/install.md" in (REPO / "README.md").read_text()
