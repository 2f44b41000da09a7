"""Shared fixtures of the Slurm unit tests: the fake cluster, no real sleeping, fresh pollers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # `tests.fakes` is imported as a package from the repository root
    sys.path.insert(0, str(_ROOT))

from airflow_provider_hpcai.triggers.poller import reset_pollers
from tests.fakes.slurm import FakeSlurmTransport


@pytest.fixture
def cluster() -> FakeSlurmTransport:
    """A fresh fake cluster."""
    return FakeSlurmTransport()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the hook's retry sleeps instead of sleeping."""
    from airflow_provider_hpcai.hooks.slurm import SlurmHook

    slept: list[float] = []
    monkeypatch.setattr(SlurmHook, "sleep", staticmethod(slept.append))
    return slept


@pytest.fixture(autouse=True)
def _fresh_pollers():
    reset_pollers()
    yield
    reset_pollers()
