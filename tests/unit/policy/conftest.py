"""Fixtures of the policy tests: a site in ``enforce`` with a champion, a clean slate of caches, and a job
through the live guard from admission to its accounting record."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.cache import clear_caches, write_champion
from airflow_provider_hpcai.advisor.history import HistoryStore, record_from_accounting
from airflow_provider_hpcai.advisor.models import TargetSpec
from airflow_provider_hpcai.advisor.online import train_compact
from airflow_provider_hpcai.policy import airflow_policy, live, settings
from airflow_provider_hpcai.resources import Resources

from ..advisor.conftest import synthetic_records

_job_ids = itertools.count(500)


def submit_and_finish(task: Any, home: str, elapsed: float) -> Resources:
    """What the operator does: admit just before submitting, then record the finished job.

    The job is ``TIMEOUT`` when it runs ``elapsed`` seconds to its admitted limit or past it.
    :return: the resources it was submitted with.
    """
    resources, bind = live_guard.admit(task.hpcai_decision, task.job_resources)
    job_id = str(next(_job_ids))
    bind(job_id)
    limit = resources.time_limit_seconds
    result = {"job_id": job_id, "state": "TIMEOUT" if elapsed >= limit else "COMPLETED",
              "elapsed_seconds": min(elapsed, limit), "requested": resources.to_dict()}
    HistoryStore(home).add(record_from_accounting(result, task.advisor_key()))
    return resources


def forget_advisor_state() -> None:
    """Forget every per-process cache the policy keeps: settings, champion, guard views, recent runs."""
    settings.reset_settings()
    clear_caches()
    live_guard.clear_views()
    live.clear_recent()


@pytest.fixture(scope="module")
def champion():
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),))
    return model


@pytest.fixture()
def site(tmp_path, monkeypatch, champion):
    """``enforce`` with a champion in a fresh home; ``site(**keys)`` states ``[hpcai]`` advisor keys.

    Every other ``AIRFLOW__HPCAI__ADVISOR_*`` variable of the caller's environment is removed first.
    """
    def use(**keys: str) -> str:
        for name in [n for n in os.environ if n.startswith("AIRFLOW__HPCAI__ADVISOR_")]:
            monkeypatch.delenv(name)
        for key, value in keys.items():
            monkeypatch.setenv(f"AIRFLOW__HPCAI__{key.upper()}", value)
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "enforce")
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
        monkeypatch.setattr(airflow_policy, "_logged", set())
        forget_advisor_state()
        write_champion(str(tmp_path), champion)
        return str(tmp_path)

    yield use
    forget_advisor_state()
