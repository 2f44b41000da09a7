"""The environment is installed against the committed constraints, and nothing in it conflicts.

``constraints/airflow-<version>-py3.11.txt`` (``scripts/generate-constraints``) is one pip
resolution of Airflow with the provider, every extra and the test tools. ``scripts/bootstrap``,
the Containerfile and docs/install.md install with it, so a package Airflow resolved is never
moved by the provider's dependencies.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = "3.3.2"
CONSTRAINTS = REPO / "constraints" / f"airflow-{AIRFLOW}-py3.11.txt"


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            out[canonicalize_name(name)] = pinned
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    kernels = tomllib.loads((REPO / "simulation_kernels" / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"]) + list(kernels["dependencies"])
    for group in (project["optional-dependencies"], kernels["optional-dependencies"]):
        texts += [t for reqs in group.values() for t in reqs]
    return [Requirement(t) for t in texts]


def test_constraints_pin_airflow_and_leave_out_our_own_distributions() -> None:
    pinned = pins()
    assert pinned["apache-airflow"] == AIRFLOW
    assert pinned["apache-airflow-core"] == AIRFLOW
    assert "airflow-provider-hpcai" not in pinned and "hpcai-simulation-kernels" not in pinned


def test_every_declared_requirement_is_met_by_its_pin() -> None:
    """A requirement raised in pyproject.toml without regenerating the constraints fails here."""
    pinned = pins()
    stale = [f"{req} (pinned {pinned[canonicalize_name(req.name)]})" for req in declared()
             if canonicalize_name(req.name) in pinned
             and not req.specifier.contains(Version(pinned[canonicalize_name(req.name)]), prereleases=True)]
    assert not stale, f"run scripts/generate-constraints: {stale}"
    missing = [str(r) for r in declared() if canonicalize_name(r.name) not in pinned
               and canonicalize_name(r.name) not in {"airflow-provider-hpcai", "hpcai-simulation-kernels"}]
    assert not missing, f"declared but not in the constraints (run scripts/generate-constraints): {missing}"


def test_packages_held_below_airflow_alone_say_why() -> None:
    held = [line for line in CONSTRAINTS.read_text().splitlines() if "# Airflow alone:" in line]
    for line in held:
        assert re.search(r"held by: \S+ \S+ needs ", line), line
    # Only MLflow's cachetools<8 holds anything back today; a new one deserves a look.
    assert len(held) <= 1, held


def test_installed_versions_are_the_pinned_ones() -> None:
    """This environment was installed with the constraints: nothing drifted, nothing was moved."""
    moved = []
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if Version(installed) != Version(pinned):
            moved.append(f"{name} {installed} (constraints: {pinned})")
    if moved and (REPO / ".venv").resolve() != Path(sys.prefix).resolve():
        pytest.skip(f"not the project's .venv; differs from the constraints: {moved}")
    assert not moved, f"re-run scripts/bootstrap: {moved}"


def test_pip_check_is_clean() -> None:
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
