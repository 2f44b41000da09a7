from __future__ import annotations

import json
import time

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.cache import clear_caches, write_champion
from airflow_provider_hpcai.advisor.models import TargetSpec
from airflow_provider_hpcai.advisor.online import train_compact
from airflow_provider_hpcai.policy import airflow_policy, settings
from airflow_provider_hpcai.resources import Resources

from ..advisor.conftest import synthetic_records

try:
    from airflow.sdk import BaseOperator
except ImportError:  # pragma: no cover
    from airflow.models.baseoperator import BaseOperator


class SimOperator(BaseOperator):
    def __init__(self, *, job_resources: Resources, nx: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.job_resources = job_resources
        self.nx = nx

    def advisor_key(self) -> dict:
        return {"dag_id": "sim", "task_id": self.task_id, "owner": self.owner, "kernel": "heat", "nx": self.nx}

    def execute(self, context):
        return None


@pytest.fixture()
def home(tmp_path, monkeypatch):
    def use(mode: str):
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", mode)
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
        settings.reset_settings()
        clear_caches()
        live_guard.clear_views()
        return str(tmp_path)

    yield use
    settings.reset_settings()
    clear_caches()
    live_guard.clear_views()


def _champion(home: str) -> None:
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),))
    write_champion(home, model)


REQ = Resources(ntasks=4, time_limit=7200, memory="16G")


def test_decision_is_recorded_and_a_fresh_guard_keeps_the_request(home):
    _champion(home("enforce"))
    task = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(task)
    decision = task.hpcai_decision
    assert decision["mode"] == "enforce" and decision["requested"]["time_limit"] == 7200
    # the champion knows the series, but the guard has seen no outcome of it yet (test_policy_live_guard.py)
    assert decision["guard"]["held"] == "no_history" and decision["predicted"]["time_limit"] is None
    assert task.job_resources == REQ
    json.dumps(decision)


def test_advise_mode_keeps_the_request(home):
    _champion(home("advise"))
    task = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(task)
    assert task.job_resources == REQ and task.hpcai_decision["guard"]["series"] == "task:sim.heat"


def test_missing_or_corrupt_registry_falls_back_to_the_request(home, tmp_path):
    home("enforce")
    task = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(task)
    assert task.job_resources == REQ and "no model" in task.hpcai_decision["reason"]
    (tmp_path / "champion.json").write_text("garbage")
    clear_caches()
    other = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(other)
    assert other.job_resources == REQ


def test_policy_never_raises_and_ignores_other_tasks(home, monkeypatch):
    home("enforce")

    class Plain(BaseOperator):
        def execute(self, context):
            return None

    plain = Plain(task_id="plain")
    airflow_policy.task_policy(plain)
    assert not hasattr(plain, "hpcai_decision")

    def explode(*args, **kwargs):
        raise RuntimeError("cache exploded")

    monkeypatch.setattr("airflow_provider_hpcai.advisor.cache.get_champion", explode)
    task = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(task)  # no exception
    assert task.job_resources == REQ


def test_policy_costs_microseconds(home):
    _champion(home("enforce"))
    task = SimOperator(task_id="heat", job_resources=REQ)
    timings = []
    for _ in range(300):
        task.job_resources = REQ
        start = time.perf_counter()
        airflow_policy.task_policy(task)
        timings.append(time.perf_counter() - start)
    timings.sort()
    assert timings[len(timings) // 2] < 1e-3
