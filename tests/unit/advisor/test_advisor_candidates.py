"""The guard's opt-in history candidates (advisor/candidates.py): known answers on small traces."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.candidates import history_candidate
from airflow_provider_hpcai.advisor.evaluate import extra_candidate_limits, load_trace
from airflow_provider_hpcai.advisor.guard import EXTRA_CANDIDATES, GuardSpec, guarded_limits
from airflow_provider_hpcai.advisor.swf import parse_swf
from airflow_provider_hpcai.exceptions import InvalidJobSpecError


def _trace(**cols):
    n = len(cols["run"])
    base = {"submit": np.arange(n) * 10_000.0, "procs": np.ones(n), "user": np.zeros(n, int)}
    base.update({k: np.asarray(v, dtype=float) if k != "user" else np.asarray(v) for k, v in cols.items()})
    return base


def _candidate(name, t):
    kind, feature, factor = EXTRA_CANDIDATES[name]
    return history_candidate(kind=kind, feature=feature, factor=factor, **t)


def test_ratio_candidate_scales_with_the_jobs_own_request():
    # The user always uses half of what they ask; requests grow 1 h, 2 h, 4 h, 8 h.
    request = [3600.0, 7200.0, 14400.0, 28800.0]
    t = _trace(run=[r / 2 for r in request], request=request)
    got = _candidate("user_ratio_max20", t)
    assert np.isnan(got[0])  # no finished job yet
    # 1.2 x the max share used (0.5) x the job's own request, not 1.2 x the last run
    assert np.allclose(got[1:], [1.2 * 0.5 * 7200.0, 1.2 * 0.5 * 14400.0, 1.2 * 0.5 * 28800.0])
    plain = _candidate("user_max5", t)  # run-time history stays at the previous, smaller jobs
    assert plain[3] < got[3]


def test_ratio_candidate_takes_the_largest_share_of_the_last_jobs():
    t = _trace(run=[900.0, 3000.0, 600.0, 100.0], request=[3600.0, 3600.0, 7200.0, 1200.0])
    got = _candidate("user_ratio_max20", t)
    # job 3 (asks 1200 s): the shares so far are 0.25, 0.833, 0.083 -> 1.2 x 0.833 x 1200
    assert got[3] == pytest.approx(1.2 * (3000.0 / 3600.0) * 1200.0)
    assert _candidate("user_ratio_max5", t)[3] == pytest.approx(got[3])


def test_procs_candidate_reads_only_the_same_size_jobs():
    # 4-core jobs run 100 s, 8-core jobs 1000 s, alternating.
    procs = [4, 8, 4, 8, 4, 8]
    run = [100.0 if p == 4 else 1000.0 for p in procs]
    t = _trace(run=run, request=[3600.0] * 6, procs=procs)
    got = _candidate("user_procs_max20", t)
    assert np.isnan(got[0]) and np.isnan(got[1])  # each size's first job has no history
    assert np.allclose(got[2:], [120.0, 1200.0, 120.0, 1200.0])
    user = history_candidate(kind="user", feature="log_max_last20", factor=1.2, **t)
    assert user[4] == pytest.approx(1200.0)  # the user's own max-of-20 mixes the sizes


def test_factor_candidates_and_only_finished_jobs_count():
    t = _trace(run=[500.0, 800.0, 300.0], request=[3600.0] * 3)
    t["submit"] = np.array([0.0, 600.0, 1000.0])  # job 1 (800 s) is still running at 1000 s
    low, high = _candidate("user_max20_x1.1", t), _candidate("user_max20_x1.5", t)
    assert low[1] == pytest.approx(1.1 * 500.0) and high[1] == pytest.approx(1.5 * 500.0)
    assert low[2] == pytest.approx(1.1 * 500.0)
    t["submit"][2] = 1500.0  # it finished at 1400 s
    assert _candidate("user_max20_x1.1", t)[2] == pytest.approx(1.1 * 800.0)


def test_bad_candidate_settings_are_refused():
    t = _trace(run=[1.0, 2.0], request=[10.0, 10.0])
    with pytest.raises(ValueError, match="series kind"):
        history_candidate(kind="executable", feature="log_max_last20", factor=1.2, **t)
    with pytest.raises(ValueError, match="history feature"):
        history_candidate(kind="user", feature="log_procs", factor=1.2, **t)
    with pytest.raises(ValueError, match="factor"):
        history_candidate(kind="user", feature="log_max_last20", factor=0.0, **t)


def test_new_candidates_are_opt_in_and_reach_the_guard(swf_text):
    assert GuardSpec().extra_candidates == ()
    names = ("user_ratio_max20", "user_procs_max20", "user_max20_x1.1", "user_max20_x1.5")
    spec = GuardSpec(extra_candidates=names)
    data = load_trace(parse_swf(swf_text.splitlines()))
    extra = extra_candidate_limits(data, spec.extra_candidates)
    cols = {"submit": data.submit, "run": data.run, "request": data.request, "procs": data.procs, "user": data.user}
    for name, values in zip(names, extra):
        assert np.array_equal(values, _candidate(name, cols), equal_nan=True)
    # A steady user whose only saving candidate is the ratio one gets it.
    n = 40
    request = np.where(np.arange(n) % 2 == 0, 7200.0, 14400.0)
    run = request / 4
    ratio = history_candidate(submit=np.arange(n) * 10_000.0, run=run, request=request, procs=np.ones(n),
                              user=np.zeros(n, int), kind="user_ratio", feature="log_max_last20", factor=1.2)
    out = guarded_limits(submit=np.arange(n) * 10_000.0, run=run, request=request, procs=np.ones(n),
                         series=np.zeros(n, int), raw=np.full(n, np.log(14000.0)), max20=np.full(n, np.nan),
                         test_start=10, guard=GuardSpec(max20_factor=0.0, profit_window=5), extra=[ratio])
    assert out.advised[10:].all() and np.allclose(out.limit[10:], 0.3 * request[10:])


def _two_users(n=80):
    """User 0 runs 1-core jobs, user 1 8-core jobs; both run 600 s and ask 2400 s."""
    submit = np.arange(n) * 1000.0
    user = np.arange(n) % 2
    return {"submit": submit, "run": np.full(n, 600.0), "request": np.full(n, 2400.0),
            "procs": np.where(user == 1, 8.0, 1.0), "series": user, "raw": np.full(n, np.log(7000.0)),
            "max20": np.full(n, 600.0), "test_start": 20}


def test_small_saving_jobs_keep_their_request():
    cols = _two_users()
    # 1.2 x 600 s = 720 s: saves 1 x 1680 core-s for user 0 and 8 x 1680 for user 1.
    plain = guarded_limits(guard=GuardSpec(), capacity=64, **cols)
    assert plain.advised[20:].all() and "small_saving" not in plain.held
    # 1 % of a 64-core machine-hour is 2304 core-s: user 0's jobs are not worth a kill, user 1's are.
    out = guarded_limits(guard=GuardSpec(min_saving_share=0.01), capacity=64, **cols)
    test_user = cols["series"][20:]
    assert not out.advised[20:][test_user == 0].any()
    assert out.advised[20:][test_user == 1].all()
    assert np.all(out.limit[20:][test_user == 0] == 2400.0) and np.all(out.limit[20:][test_user == 1] == 720.0)
    assert out.held["small_saving"] == (test_user == 0).sum()


def test_small_saving_needs_a_capacity_and_a_share_below_one():
    with pytest.raises(InvalidJobSpecError, match="capacity"):
        guarded_limits(guard=GuardSpec(min_saving_share=0.01), **_two_users())
    for bad in (-0.1, 1.0):
        with pytest.raises(InvalidJobSpecError, match="min_saving_share"):
            GuardSpec(min_saving_share=bad)
