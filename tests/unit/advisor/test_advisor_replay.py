from __future__ import annotations

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.replay import bounded_slowdown, easy_backfill


def _run(submit, procs, run, limit, estimate=None, capacity=10, retry=None):
    estimate = limit if estimate is None else estimate
    retry = limit if retry is None else retry
    return easy_backfill(np.array(submit, float), np.array(procs), np.array(run, float), np.array(limit, float),
                         np.array(estimate, float), capacity, np.array(retry, float))


def test_fcfs_when_nothing_can_backfill():
    r = _run([0, 1], [10, 5], [100, 10], [200, 20])
    assert list(r.start) == [0, 100] and list(r.end) == [100, 110]


def test_backfill_only_when_the_head_is_not_delayed():
    # A holds 6 of 10 procs until 100 (estimate 100); B needs 8 and reserves t=100.
    # C (2 procs, est 50) ends before the shadow time: backfilled. D (4 procs, est 500) would
    # delay B and only 2 procs are spare: it waits.
    r = _run([0, 1, 2, 3], [6, 8, 2, 4], [100, 10, 50, 100], [100, 20, 50, 500])
    assert r.start[2] == 2 and r.start[1] == 100 and r.start[3] >= 110


def test_tighter_estimates_backfill_more():
    loose = _run([0, 1, 2], [6, 8, 4], [100, 10, 30], [100, 20, 1000])
    tight = _run([0, 1, 2], [6, 8, 4], [100, 10, 30], [100, 20, 40])
    assert loose.start[2] > 2 and tight.start[2] == 2


def test_killed_job_is_resubmitted_with_the_request_and_charged_from_its_first_submit():
    r = _run([0], [4], [100], [60], retry=[300])
    assert r.killed[0] and r.start[0] == 60 and r.end[0] == 160
    assert bounded_slowdown(r.end - 0.0, np.array([100.0]))[0] == pytest.approx(1.6)


def test_estimate_below_run_is_not_a_kill():
    r = _run([0], [4], [100], [300], estimate=[10])
    assert not r.killed[0] and r.end[0] == 100


def test_bounded_slowdown_floor_and_tau():
    assert list(bounded_slowdown(np.array([5.0, 100.0]), np.array([1.0, 50.0]), 10.0)) == [1.0, 2.0]
