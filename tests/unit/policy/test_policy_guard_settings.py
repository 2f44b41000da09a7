"""Through Airflow's policy entry point: the guard works with the site's [hpcai] settings."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.policy import airflow_policy, live
from airflow_provider_hpcai.resources import Resources

from .conftest import submit_and_finish
from .test_policy_airflow import SimOperator

REQ = Resources(ntasks=4, time_limit=7200, memory="16G")
RUNS = {"heat": 250.0, "wave": 620.0}  # about what the synthetic heat and wave jobs run at nx=512


def _parse(task_id: str) -> SimOperator:
    live_guard.clear_views()
    live.clear_recent()
    task = SimOperator(task_id=task_id, job_resources=REQ)
    airflow_policy.task_policy(task)
    return task


@pytest.mark.parametrize(("budget", "wave_after_a_heat_kill"), [(None, "cut"), ("0.001", "brake")])
def test_a_site_budget_so_small_that_one_kill_holds_the_brake(site, budget, wave_after_a_heat_kill):
    # 0.85 x 0.001 x 1000 submissions = 0.85: one kill holds the brake; the shipped 5 % needs 43
    home = site(**({"advisor_kill_budget": budget} if budget else {}))
    for task_id in ("heat", "wave"):  # one outcome each: both series may be cut
        submit_and_finish(_parse(task_id), home, RUNS[task_id])
    cut = _parse("heat")
    assert cut.hpcai_decision["guard"]["held"] is None and cut.job_resources.time_limit_seconds < 7200
    submit_and_finish(cut, home, 10 * 7200)  # runs far past its cut: killed

    wave = _parse("wave")
    if wave_after_a_heat_kill == "brake":
        assert wave.hpcai_decision["guard"]["held"] == "brake"
        assert wave.job_resources == REQ  # the other series keeps its request too
    else:
        assert wave.hpcai_decision["guard"]["held"] is None
        assert wave.job_resources.time_limit_seconds < 7200


def test_a_bad_guard_key_keeps_every_request_and_is_logged_once(site, caplog):
    home = site()
    submit_and_finish(_parse("heat"), home, RUNS["heat"])
    assert _parse("heat").job_resources.time_limit_seconds < 7200  # with good settings: cut

    site(advisor_kill_budget="5")  # 5 meaning 5 %
    caplog.set_level(logging.WARNING, logger=airflow_policy.__name__)
    tasks = [_parse("heat") for _ in range(3)]  # parsing goes on
    assert all(t.job_resources == REQ and getattr(t, "hpcai_decision", None) is None for t in tasks)
    said = [r.getMessage() for r in caplog.records if "hpcai advisor skipped" in r.getMessage()]
    assert len(said) == 1
    assert "[hpcai] advisor_kill_budget (AIRFLOW__HPCAI__ADVISOR_KILL_BUDGET) must be a number between 0 and 1" in said[0]
    assert "tasks keep their requested resources" in said[0]
