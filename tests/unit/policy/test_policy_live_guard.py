"""Through Airflow's policy entry point: a task's resources change as the live guard says."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.cache import write_champion
from airflow_provider_hpcai.advisor.history import HistoryStore, record_from_accounting
from airflow_provider_hpcai.advisor.models import TargetSpec
from airflow_provider_hpcai.advisor.online import train_compact
from airflow_provider_hpcai.policy import airflow_policy, live
from airflow_provider_hpcai.resources import Resources

from ..advisor.conftest import synthetic_records
from .conftest import forget_advisor_state, submit_and_finish
from .test_policy_airflow import SimOperator

REQ = Resources(ntasks=4, time_limit=7200, memory="16G")
KEY = {"dag_id": "sim", "task_id": "heat", "owner": "airflow", "kernel": "heat", "nx": 512}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    def use(mode: str, enforce_time_min: bool = False, time_min_soft: bool = True) -> str:
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", mode)
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_ENFORCE_TIME_MIN", str(enforce_time_min))
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_TIME_MIN_SOFT", str(time_min_soft))
        monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
        forget_advisor_state()
        return str(tmp_path)

    yield use
    forget_advisor_state()


def _parse() -> SimOperator:
    """A fresh parse of the task in a fresh view of the state (the 30 s cache forgotten)."""
    live_guard.clear_views()
    live.clear_recent()
    task = SimOperator(task_id="heat", job_resources=REQ)
    airflow_policy.task_policy(task)
    return task


def test_enforce_follows_the_guard_no_history_then_cut_then_probation(home):
    path = home("enforce", enforce_time_min=True)
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),
                                                   TargetSpec(name="runtime_estimate", quantile=0.3)))
    write_champion(path, model)

    def planned(task: SimOperator) -> Resources:  # the request, planning with the q0.3 estimate
        estimate = task.hpcai_decision["guard"]["estimate"]
        return REQ.replace(time_min=int(max(60, min(estimate, REQ.time_limit_seconds))))

    first = _parse()  # held, yet it plans with its estimate (time_min); the limit stays the request's
    assert first.hpcai_decision["guard"]["held"] == "no_history" and first.job_resources == planned(first)
    submit_and_finish(first, path, 250.0)  # a heat job at nx=512 runs about 240 s

    cut = _parse()
    verdict = cut.hpcai_decision["guard"]
    assert verdict["held"] is None and verdict["limit"] < 0.85 * 7200
    assert cut.job_resources.time_limit_seconds == int(verdict["limit"])
    assert 60 <= cut.job_resources.time_min_seconds <= cut.job_resources.time_limit_seconds
    assert cut.job_resources.time_min_seconds == int(max(60, min(verdict["estimate"], verdict["limit"])))
    submitted = submit_and_finish(cut, path, 10 * 7200)  # runs far past the cut: killed
    assert submitted.time_limit_seconds == int(verdict["limit"])

    after_kill = _parse()
    assert after_kill.hpcai_decision["guard"]["held"] == "probation"
    assert after_kill.job_resources == planned(after_kill)
    for _ in range(3):
        submit_and_finish(_parse(), path, 250.0)
    assert _parse().job_resources.time_limit_seconds < 7200  # three shadow successes: cut again


def test_estimate_mode_plans_with_the_last_two_runs_from_the_history_store(home):
    path = home("estimate")  # no champion at all
    assert _parse().job_resources == REQ
    for i, elapsed in enumerate((4000.0, 1000.0, 2000.0)):
        HistoryStore(path).add(record_from_accounting(
            {"job_id": str(90 + i), "state": "COMPLETED", "elapsed_seconds": elapsed, "submit_time": 1e9 + i,
             "requested": REQ.to_dict()}, KEY))
    task = _parse()
    assert task.job_resources.time_min_seconds == 1500 and task.job_resources.time_limit_seconds == 7200
    assert task.hpcai_decision["predicted"] == {"time_min": 1500}


def test_no_time_min_where_slurm_would_make_it_a_hard_limit(home):
    """Without time_min_as_soft_limit a backfilled job is killed at its time_min: the estimate is only recorded."""
    path = home("estimate", time_min_soft=False)
    for i, elapsed in enumerate((1000.0, 2000.0)):
        HistoryStore(path).add(record_from_accounting(
            {"job_id": str(90 + i), "state": "COMPLETED", "elapsed_seconds": elapsed, "submit_time": 1e9 + i,
             "requested": REQ.to_dict()}, KEY))
    task = _parse()
    assert task.job_resources == REQ and task.hpcai_decision["predicted"] == {"time_min": 1500}
    assert "time_min_as_soft_limit" in task.hpcai_decision["reason"]
    path = home("enforce", enforce_time_min=True, time_min_soft=False)
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),
                                                   TargetSpec(name="runtime_estimate", quantile=0.3)))
    write_champion(path, model)
    submit_and_finish(_parse(), path, 250.0)
    cut = _parse()
    assert cut.job_resources.time_limit_seconds < 7200 and cut.job_resources.time_min_seconds is None
    assert "time_min_as_soft_limit" in cut.hpcai_decision["reason"]


def test_enforce_sets_no_time_min_unless_the_site_asks(home):
    """Slurm may lower a job's limit towards --time-min: by default enforce sets only the limit."""
    path = home("enforce")
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),
                                                   TargetSpec(name="runtime_estimate", quantile=0.3)))
    write_champion(path, model)
    submit_and_finish(_parse(), path, 250.0)
    cut = _parse()
    assert cut.hpcai_decision["guard"]["held"] is None
    assert cut.job_resources.time_limit_seconds < 7200
    assert cut.job_resources.time_min_seconds is None
    assert cut.hpcai_decision["predicted"]["time_min"] == cut.hpcai_decision["guard"]["estimate"]  # recorded
