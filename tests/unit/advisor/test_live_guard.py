"""The guard's live state (advisor/live_guard.py): two processes, one state file, a fake clock."""

from __future__ import annotations

import json
import math
import os

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.guard import GuardSpec
from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord
from airflow_provider_hpcai.advisor.live_guard import LiveGuard
from airflow_provider_hpcai.resources import Resources

RAW = math.log(600.0) + 0.1  # the champion predicts about 660 s for a 600 s job
REQUEST = 7200.0


class Clock:
    """Wall and monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock():
    return Clock()


def _guard(home, clock, spec=None):
    # check_every=0: every view re-stats the file (two "processes" see each other's writes at once)
    return LiveGuard(str(home), spec, check_every=0.0, clock=clock, monotonic=clock)


_ids = iter(range(10_000, 99_999))


def run_job(guard, series, run, clock, *, state="COMPLETED", use_cut=True, raw=RAW, max20=math.nan, procs=1.0):
    """Parse, admit, submit and finish one job of ``procs`` cores that runs ``run`` seconds (killed past its
    limit); returns (verdict at parse, limit it ran with)."""
    verdict = guard.judge(series, raw, max20, REQUEST, procs)
    cut = verdict["limit"] if use_cut else None
    ticket, limit, _ = guard.admit(verdict, cut)
    job_id = str(next(_ids))
    guard.bind(ticket, job_id)
    ran_with = limit if limit is not None else REQUEST
    elapsed = min(run, ran_with)
    clock.t += elapsed
    killed = limit is not None and run > limit
    guard.note_finished([JobRecord(job_id=job_id, submit_time=clock.t - elapsed, state="TIMEOUT" if killed else state,
                                   elapsed_seconds=elapsed, requested_seconds=ran_with, cpus=int(procs))])
    clock.t += 10
    return verdict, limit


def _warm(guard, series, clock, n=3):
    for _ in range(n):
        run_job(guard, series, 600.0, clock)


def test_a_fresh_series_keeps_its_request_until_one_outcome_is_known(tmp_path, clock):
    guard = _guard(tmp_path, clock)
    first = guard.judge("task:d.t", RAW, math.nan, REQUEST, 1.0)
    assert first["limit"] is None and first["held"] == "no_history"
    _warm(guard, "task:d.t", clock, n=1)
    second = guard.judge("task:d.t", RAW, math.nan, REQUEST, 1.0)
    assert second["held"] is None and 600 < second["limit"] < 0.2 * REQUEST


def test_a_burst_beyond_the_in_flight_cap_keeps_the_request(tmp_path, clock):
    a, b = _guard(tmp_path, clock), _guard(tmp_path, clock)  # two Airflow workers, one state file
    _warm(a, "task:d.burst", clock)
    # Eight mapped tasks parsed at once: every parse sees nothing in flight and advises.
    verdicts = [(a if i % 2 else b).judge("task:d.burst", RAW, math.nan, REQUEST, 1.0) for i in range(8)]
    assert all(v["limit"] is not None for v in verdicts)
    # At submission, under the lock, only the first five keep the cut, whichever process submits.
    limits = [(a if i % 2 else b).admit(v, v["limit"])[1:] for i, v in enumerate(verdicts)]
    assert [lim is not None for lim, _ in limits] == [True] * 5 + [False] * 3
    assert {why for lim, why in limits if lim is None} == {"in_flight"}
    on_disk = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert on_disk["in_flight"] == {"task:d.burst": 5}
    # A sixth parse now sees the cap in the state file and keeps the request at once.
    assert b.judge("task:d.burst", RAW, math.nan, REQUEST, 1.0)["held"] == "in_flight"


def test_the_operator_hook_gives_the_request_back_when_the_cap_is_full(tmp_path, clock):
    guard = _guard(tmp_path, clock)
    _warm(guard, "task:d.op", clock)
    live_guard.clear_views()
    live_guard._GUARDS[str(tmp_path)] = guard
    try:
        verdict = guard.judge("task:d.op", RAW, math.nan, REQUEST, 1.0)
        cut = Resources(ntasks=1, time_limit=int(verdict["limit"]), time_min=120)
        submitted = [live_guard.admit({"guard": verdict}, cut, home=str(tmp_path))[0] for _ in range(7)]
    finally:
        live_guard.clear_views()
    assert [r.time_limit_seconds for r in submitted] == [int(verdict["limit"])] * 5 + [int(REQUEST)] * 2
    assert submitted[-1].time_min_seconds == 120  # the user's own time_min is kept
    untouched = Resources(ntasks=1, time_limit=7200)
    assert live_guard.admit(None, untouched, home=str(tmp_path))[0] is untouched  # no decision: no guard


def test_after_a_kill_the_series_is_on_probation_until_three_shadow_limits_hold(tmp_path, clock):
    a, b = _guard(tmp_path, clock), _guard(tmp_path, clock)
    _warm(a, "task:d.p", clock)
    _, limit = run_job(a, "task:d.p", 1800.0, clock)  # runs 3x as long as predicted: killed
    assert limit is not None and limit < 1800
    state = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert state["probation"] == {"task:d.p": 0} and len(state["kills_seen"]) == 1
    for i in range(3):  # the other process sees the probation; each job keeps its request
        verdict, limit = run_job(b, "task:d.p", 600.0, clock)
        assert verdict["held"] == "probation" and limit is None, i
    verdict = a.judge("task:d.p", RAW, math.nan, REQUEST, 1.0)
    assert verdict["held"] is None and verdict["limit"] < 0.2 * REQUEST  # three shadow successes: advised again


def test_a_long_run_during_probation_starts_it_again(tmp_path, clock):
    guard = _guard(tmp_path, clock)
    _warm(guard, "task:d.q", clock)
    run_job(guard, "task:d.q", 1800.0, clock)
    run_job(guard, "task:d.q", 600.0, clock)
    run_job(guard, "task:d.q", 1800.0, clock)  # would have been killed by the model's limit: back to 0
    run_job(guard, "task:d.q", 600.0, clock)
    run_job(guard, "task:d.q", 600.0, clock)
    assert guard.judge("task:d.q", RAW, math.nan, REQUEST, 1.0)["held"] == "probation"


def test_the_brake_stops_advice_when_kills_reach_85_percent_of_the_budget(tmp_path, clock):
    # budget 10 % over a 20-submission window: the brake holds at 0.85 x 0.1 x 20 = 1.7, i.e. 2 kills
    spec = GuardSpec(kill_budget=0.1, brake_window=20)
    a, b = _guard(tmp_path, clock, spec), _guard(tmp_path, clock, spec)
    for series in ("task:d.x", "task:d.y", "task:d.healthy"):
        _warm(a, series, clock, n=1)
    run_job(a, "task:d.x", 1800.0, clock)  # one kill: 1 < 1.7, others still advised
    assert b.judge("task:d.healthy", RAW, math.nan, REQUEST, 1.0)["held"] is None
    run_job(b, "task:d.y", 1800.0, clock)  # a second kill, from the other process
    verdict = a.judge("task:d.healthy", RAW, math.nan, REQUEST, 1.0)
    assert verdict["held"] == "brake" and verdict["limit"] is None
    held = [run_job(a, "task:d.healthy", 600.0, clock)[0]["held"] for _ in range(20)]
    # kills at submissions 3 and 4; submission 24 looks back to 4 (as the replay does): one kill left
    assert held == ["brake"] * 19 + [None]


def test_the_history_store_feeds_the_guard_and_lost_jobs_expire(tmp_path, clock):
    guard = _guard(tmp_path, clock)
    _warm(guard, "task:d.h", clock, n=1)
    live_guard.clear_views()
    live_guard._GUARDS[str(tmp_path)] = guard
    try:
        verdict = guard.judge("task:d.h", RAW, math.nan, REQUEST, 1.0)
        ticket, limit, _ = guard.admit(verdict, verdict["limit"])
        guard.bind(ticket, "77")
        assert json.loads((tmp_path / live_guard.STATE_FILE).read_text())["in_flight"] == {"task:d.h": 1}
        # what the operators call at the end of every job: the kill reaches the guard
        HistoryStore(str(tmp_path)).add(JobRecord(job_id="77", submit_time=clock.t, state="TIMEOUT",
                                                  elapsed_seconds=limit, requested_seconds=limit, dag_id="d",
                                                  task_id="h"))
    finally:
        live_guard.clear_views()
    state = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert state["in_flight"] == {} and state["probation"] == {"task:d.h": 0} and not state["pending"]
    # a submission whose end is never recorded stops counting a day after its limit
    verdict = guard.judge("task:d.other", RAW, math.nan, REQUEST, 1.0)
    ticket, _, _ = guard.admit(verdict, None)
    guard.bind(ticket, "78")
    clock.t += REQUEST + live_guard.LOST_GRACE_S + 1
    with guard.update():
        pass
    assert not json.loads((tmp_path / live_guard.STATE_FILE).read_text())["pending"]


def test_a_damaged_state_file_is_a_fresh_state_and_never_stops_a_submission(tmp_path, clock, caplog):
    (tmp_path / live_guard.STATE_FILE).write_text('{"format": "hpcai-advisor-guard/1", "seq": ')  # torn write
    cut = Resources(ntasks=1, time_limit=600)
    verdict = {"series": "s", "candidates": [600.0, None], "cap": 6120.0, "raw": RAW, "used_global": 0.0,
               "used_series": 0.0, "request": 7200.0, "procs": 1.0, "limit": 600.0}
    live_guard.clear_views()
    live_guard._warned.clear()
    try:
        out, bind = live_guard.admit({"guard": verdict}, cut, home=str(tmp_path))
        bind("1")
    finally:
        live_guard.clear_views()
    assert out.time_limit_seconds == 7200  # a fresh state knows no outcome of the series: the request
    assert "hpcai-advisor-guard" in (tmp_path / live_guard.STATE_FILE).read_text()  # rewritten whole
    assert json.loads((tmp_path / live_guard.STATE_FILE).read_text())["pending"]["0." + str(os.getpid())]["job_id"] == "1"
    assert "guard_state.json failed" in caplog.text


def test_the_policy_reads_the_state_file_at_most_every_30_seconds(tmp_path, clock, monkeypatch):
    tick = Clock()  # the reader's monotonic clock, moved only here
    reader = LiveGuard(str(tmp_path), check_every=30.0, clock=clock, monotonic=tick)
    writer = _guard(tmp_path, clock)
    reads = []
    real_read = LiveGuard._read
    monkeypatch.setattr(LiveGuard, "_read", lambda self: reads.append(self is reader) or real_read(self))
    assert reader.judge("task:d.v", RAW, math.nan, REQUEST, 1.0)["held"] == "no_history"  # no file: not read
    _warm(writer, "task:d.v", clock, n=1)
    tick.t += 15
    for _ in range(100):  # many parses within 30 s: no re-read, the old view holds
        assert reader.judge("task:d.v", RAW, math.nan, REQUEST, 1.0)["held"] == "no_history"
    assert reads.count(True) == 0
    tick.t += 15
    assert reader.judge("task:d.v", RAW, math.nan, REQUEST, 1.0)["held"] is None
    reader.judge("task:d.v", RAW, math.nan, REQUEST, 1.0)
    tick.t += 31
    reader.judge("task:d.v", RAW, math.nan, REQUEST, 1.0)  # unchanged file: stat only, no read
    assert reads.count(True) == 1


def test_a_job_that_completed_past_its_advised_limit_fitted(tmp_path, clock):
    # Slurm rounds a limit up to whole minutes: 661 s runs as 12 min; COMPLETED at 700 s is no kill
    guard = _guard(tmp_path, clock)
    _warm(guard, "task:d.r", clock, n=1)
    verdict = guard.judge("task:d.r", RAW, math.nan, REQUEST, 1.0)
    ticket, limit, _ = guard.admit(verdict, verdict["limit"])
    guard.bind(ticket, "round-1")
    guard.note_finished([JobRecord(job_id="round-1", submit_time=clock.t, state="COMPLETED",
                                   elapsed_seconds=limit + 39, requested_seconds=limit)])
    state = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert state["kills_seen"] == [] and state["in_flight"] == {} and state["probation"] == {}


def _admit_many(home: str, verdict: dict, n: int) -> int:
    guard = LiveGuard(home, check_every=0.0)
    return sum(guard.admit(verdict, verdict["limit"])[1] is not None for _ in range(n))


def test_four_real_processes_admitting_at_once_bet_at_most_the_cap(tmp_path, clock):
    import multiprocessing

    guard = _guard(tmp_path, clock)
    _warm(guard, "task:d.mp", clock, n=1)
    verdict = guard.judge("task:d.mp", RAW, math.nan, REQUEST, 1.0)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        advised = pool.starmap(_admit_many, [(str(tmp_path), verdict, 25)] * 4)
    state = json.loads((tmp_path / live_guard.STATE_FILE).read_text())
    assert sum(advised) == 5 and state["in_flight"] == {"task:d.mp": 5}
    assert state["seq"] == 1 + 100 and len(state["pending"]) == 100  # no submission lost to a race
