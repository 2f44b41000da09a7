"""The guard's opt-in setting, live: extra history candidates and the small-saving rule (advisor/live_guard.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.guard import GuardSpec
from airflow_provider_hpcai.advisor.guard_status import describe
from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord
from airflow_provider_hpcai.advisor.live_guard import LiveGuard
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

from .test_live_guard import Clock, run_job

REQUEST = 7200.0
HIGH_RAW = math.log(3000.0)  # the model over-predicts a 600 s job: the history candidates save more
X11 = GuardSpec(extra_candidates=("user_max20_x1.1",))


def _guard(home, clock, spec=None, capacity=None):
    return LiveGuard(str(home), spec, check_every=0.0, clock=clock, monotonic=clock, capacity=capacity)


def _cycle(guard, series, runs, clock, *, run=600.0, raw=HIGH_RAW, procs=1.0):
    """Parse, admit, submit and finish one job of ``series``; ``runs`` is its run history (appended to)."""
    verdict, _ = run_job(guard, series, run, clock, raw=raw, max20=max(runs[-20:]) if runs else math.nan,
                         procs=procs)
    runs.append(min(run, REQUEST))
    return verdict


def test_the_shipped_spec_keeps_its_two_candidates():
    assert live_guard.candidate_names(GuardSpec()) == ["model", "max20"]
    assert live_guard.extra_limits(GuardSpec(), 600.0) == []
    spec = GuardSpec(extra_candidates=("user_max20_x1.1", "user_max20_x1.5", "user_procs_max20"))
    asked = []
    values = live_guard.extra_limits(spec, 600.0, lambda: asked.append(1) or [100.0, 200.0])
    assert values == pytest.approx([660.0, 900.0, 240.0]) and asked == [1]
    assert math.isnan(live_guard.extra_limits(GuardSpec(extra_candidates=("user_procs_max20",)), 600.0, list)[0])
    with pytest.raises(ValueError, match="user_request_max20"):
        live_guard.extra_limits(GuardSpec(extra_candidates=("user_request_max20",)), 600.0)


def test_1_1_x_max20_gets_the_limit_once_its_shadow_nets_favour_it(tmp_path):
    clock = Clock()
    opt_in, shipped = _guard(tmp_path / "a", clock, X11), _guard(tmp_path / "b", clock)
    runs_a, runs_b = [], []
    chosen_a = [_cycle(opt_in, "task:d.t", runs_a, clock)["chosen"] for _ in range(6)]
    chosen_b = [_cycle(shipped, "task:d.t", runs_b, clock)["chosen"] for _ in range(6)]
    # no history, then the model's 3000 s (the only net with outcomes), then 1.1 x 600 once its net is ahead
    assert chosen_a[0] == -1 and chosen_a[1] == 0 and chosen_a[-1] == 2
    assert chosen_b[-1] == 1  # the shipped guard: 1.2 x max20
    verdict_a = opt_in.judge("task:d.t", HIGH_RAW, 600.0, REQUEST, 1.0)
    verdict_b = shipped.judge("task:d.t", HIGH_RAW, 600.0, REQUEST, 1.0)
    assert verdict_a["limit"] == pytest.approx(660.0) and verdict_b["limit"] == pytest.approx(720.0)
    assert len(verdict_a["candidates"]) == 3 and len(verdict_b["candidates"]) == 2
    state = json.loads((tmp_path / "a" / live_guard.STATE_FILE).read_text())
    assert state["candidates"] == ["model", "max20", "user_max20_x1.1"] and len(state["nets"]["task:d.t"]) == 3


def test_min_saving_share_holds_a_small_job_and_cuts_a_wide_one(tmp_path):
    clock = Clock()
    spec = GuardSpec(min_saving_share=0.01)  # 1 % of 1000 cores x 3600 s = 36 000 core-seconds
    with pytest.raises(InvalidJobSpecError, match="capacity"):
        _guard(tmp_path, clock, spec)
    guard = _guard(tmp_path, clock, spec, capacity=1000)
    small, wide = [], []
    for _ in range(4):
        _cycle(guard, "task:d.small", small, clock, procs=1.0)
        _cycle(guard, "task:d.wide", wide, clock, procs=64.0)
    held = guard.judge("task:d.small", HIGH_RAW, 600.0, REQUEST, 1.0)  # saves ~6 500 core-seconds
    assert held["held"] == "small_saving" and held["limit"] is None and held["chosen"] == -1
    cut = guard.judge("task:d.wide", HIGH_RAW, 600.0, REQUEST, 64.0)  # saves 64 x that
    assert cut["held"] is None and cut["limit"] < 0.5 * REQUEST
    # the fresh re-check at submission applies the same rule
    assert guard.admit(dict(cut, procs=1.0), cut["limit"])[1:] == (None, "small_saving")
    assert guard.admit(cut, cut["limit"])[1] == cut["limit"]
    off = _guard(tmp_path, clock)  # shipped spec, same state: the small job is cut
    assert off.judge("task:d.small", HIGH_RAW, 600.0, REQUEST, 1.0)["held"] is None


def test_turning_the_option_on_resets_the_nets_once_and_mixes_no_candidates(tmp_path, caplog):
    clock = Clock()
    shipped = _guard(tmp_path, clock)
    runs = []
    for _ in range(3):
        _cycle(shipped, "task:d.t", runs, clock)
    pending = shipped.judge("task:d.t", HIGH_RAW, 600.0, REQUEST, 1.0)  # admitted under the old candidates
    ticket, _, _ = shipped.admit(pending, pending["limit"])
    shipped.bind(ticket, "777")
    assert len(json.loads((tmp_path / live_guard.STATE_FILE).read_text())["nets"]["task:d.t"]) == 2

    caplog.set_level(logging.WARNING, logger=live_guard.__name__)
    live_guard._warned.clear()
    opt_in = _guard(tmp_path, clock, X11)
    for _ in range(3):
        verdict = opt_in.judge("task:d.t", HIGH_RAW, 600.0, REQUEST, 1.0)
    said = [r.getMessage() for r in caplog.records if "start again" in r.getMessage()]
    assert len(said) == 1 and "user_max20_x1.1" in said[0]
    assert verdict["held"] is None and verdict["chosen"] == 0  # nets reset: margins kept, the first candidate
    # the job admitted under the old candidates ends: margins learn, no net does
    outcomes = opt_in.view().guard.margins["task:d.t"][1]
    opt_in.note_finished([JobRecord(job_id="777", submit_time=clock.t, state="COMPLETED", elapsed_seconds=600.0,
                                    requested_seconds=pending["limit"])])
    state = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert state["margins"]["task:d.t"][1] == outcomes + 1 and "task:d.t" not in state["nets"]
    assert state["candidates"] == ["model", "max20", "user_max20_x1.1"]
    # an admission judged with the old candidates keeps its request instead of mixing them
    assert opt_in.admit(pending, pending["limit"])[1:] == (None, "candidates_changed")
    for _ in range(4):
        _cycle(opt_in, "task:d.t", runs, clock)
    assert len(json.loads((tmp_path / live_guard.STATE_FILE).read_text())["nets"]["task:d.t"]) == 3
    assert opt_in.judge("task:d.t", HIGH_RAW, 600.0, REQUEST, 1.0)["chosen"] == 2

    # turning it off again: back to two nets, no crash
    again = _guard(tmp_path, clock)
    _cycle(again, "task:d.t", runs, clock)
    assert len(json.loads((tmp_path / live_guard.STATE_FILE).read_text())["nets"]["task:d.t"]) == 2


def test_a_series_whose_nets_have_another_length_is_reset_and_said_once(tmp_path, caplog):
    clock = Clock()
    guard = _guard(tmp_path, clock)
    for series in ("task:d.a", "task:d.b"):
        runs = []
        for _ in range(3):
            _cycle(guard, series, runs, clock)
    path = tmp_path / live_guard.STATE_FILE
    state = json.loads(path.read_text())
    state["nets"]["task:d.a"] = state["nets"]["task:d.a"][:1]  # a hand edit, or an older writer
    path.write_text(json.dumps(state))
    caplog.set_level(logging.WARNING, logger=live_guard.__name__)
    live_guard._warned.clear()
    fresh = _guard(tmp_path, clock)
    for _ in range(2):
        assert fresh.judge("task:d.a", HIGH_RAW, 600.0, REQUEST, 1.0)["held"] is None  # no IndexError
    said = [r.getMessage() for r in caplog.records if "another number of candidates" in r.getMessage()]
    assert len(said) == 1 and "task:d.a" in said[0]
    view = fresh.view().guard.nets
    assert "task:d.a" not in view and len(view["task:d.b"]) == 2


def test_last_runs_of_the_same_size(tmp_path):
    store = HistoryStore(tmp_path)
    store.add([JobRecord(job_id=str(i), submit_time=1000.0 + i, state="COMPLETED", elapsed_seconds=100.0 + i,
                         requested_seconds=3600.0, cpus=4 if i % 2 else 64, dag_id="d", task_id="t", source="swf")
               for i in range(10)])
    series = JobRecord(job_id="x", submit_time=0, state="COMPLETED", elapsed_seconds=1, requested_seconds=1,
                       dag_id="d", task_id="t").series
    assert store.last_runs(series, 3, cpus=4) == [109.0, 107.0, 105.0]
    assert store.last_runs(series, 3, cpus=64) == [108.0, 106.0, 104.0]
    assert store.last_runs(series, 3, cpus=8) == []
    assert store.last_runs(series, 3) == [109.0, 108.0, 107.0]


def test_status_names_the_new_settings(tmp_path):
    spec = dataclasses.replace(GuardSpec(), extra_candidates=("user_max20_x1.1", "user_procs_max20"),
                               min_saving_share=0.01)
    line = describe(str(tmp_path), spec, machine_cores=4096)[0]
    assert "extra candidates user_max20_x1.1, user_procs_max20 ([hpcai] advisor_guard_extra_candidates)" in line
    assert "under 1 % of a machine-hour (4096 cores, [hpcai] advisor_machine_cores)" in line
    assert "advisor_guard_min_saving_share" in line
    shipped = describe(str(tmp_path), GuardSpec())[0]
    assert "no extra candidates" in shipped and "no minimum saving" in shipped
