"""The operator's two guard hooks on the fake cluster: admit at submission, learn at the end of the job."""

from __future__ import annotations

import json
import math

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord
from airflow_provider_hpcai.policy import settings
from airflow_provider_hpcai.resources import Resources
from tests.unit.slurm.test_slurm_operator import (
    DictStore,
    FakeTI,
    context,
    defer,
    fire,
    make_op,
    wire_fake_cluster,
)

SERIES = "task:hpc_dag.train"
REQ = Resources(memory="1G", time_limit=7200)


@pytest.fixture()
def cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "enforce")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
    settings.reset_settings()
    live_guard.clear_views()
    yield wire_fake_cluster(monkeypatch)
    settings.reset_settings()
    live_guard.clear_views()


def _policy_said(home: str) -> tuple[dict, Resources]:
    """What the policy leaves on the task at parse time: the decision with the guard's verdict, the cut."""
    guard = live_guard.LiveGuard(home, check_every=0.0)
    if not (guard.view().guard.margins.get(SERIES) or [0, 0])[1]:  # one outcome, so that the guard may advise
        verdict = guard.judge(SERIES, math.log(600.0), math.nan, 7200.0, 1.0)
        ticket, _, _ = guard.admit(verdict, None)
        guard.bind(ticket, "warm-1")
        guard.note_finished([JobRecord(job_id="warm-1", submit_time=1e9, state="COMPLETED", elapsed_seconds=500.0,
                                       requested_seconds=7200.0)])
    verdict = guard.judge(SERIES, math.log(600.0), math.nan, 7200.0, 1.0)
    assert verdict["limit"] is not None
    cut = REQ.replace(time_limit=int(verdict["limit"]))
    return {"mode": "enforce", "guard": verdict}, cut


def _state(home) -> dict:
    return json.loads((home / live_guard.STATE_FILE).read_text())


def test_the_operator_submits_the_cut_and_its_end_reaches_the_guard(cluster, tmp_path):
    decision, cut = _policy_said(str(tmp_path))
    op = make_op(job_resources=cut)
    op.hpcai_decision = decision
    ctx = context(DictStore(), FakeTI())
    trigger = defer(op, ctx)
    assert cluster.only_job().time_limit_seconds == cut.time_limit_seconds
    assert _state(tmp_path)["in_flight"] == {SERIES: 1}
    result = op.execute_complete(ctx, fire(trigger))
    assert result["state"] == "COMPLETED" and len(HistoryStore(str(tmp_path))) == 1
    state = _state(tmp_path)
    assert state["in_flight"] == {} and not state["pending"] and state["margins"][SERIES][1] == 2


def test_the_operator_gives_the_request_back_when_the_fresh_state_holds_the_job(cluster, tmp_path):
    decision, cut = _policy_said(str(tmp_path))
    with live_guard.LiveGuard(str(tmp_path)).update() as state:
        state.guard.in_flight[SERIES] = 5  # five advised jobs of this task are running (other workers)
    op = make_op(job_resources=cut)
    op.hpcai_decision = decision  # parsed from a snapshot that did not see them yet
    defer(op, context(DictStore(), FakeTI()))
    assert cluster.only_job().time_limit_seconds == 7200
    assert _state(tmp_path)["in_flight"] == {SERIES: 5}
