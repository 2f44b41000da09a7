from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.features import SeriesState, features_from_state, history_features
from airflow_provider_hpcai.advisor.models import CompactModel, OnlineMargin, TargetSpec, fit_quantreg
from airflow_provider_hpcai.advisor.online import run_online, table_from_records, train_compact
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources

from .conftest import synthetic_records


def _table(n=400, seed=1):
    rng = np.random.default_rng(seed)
    series = rng.integers(0, 5, n)
    submit = np.cumsum(rng.exponential(100, n))
    value = np.exp(4 + series + rng.normal(0, 0.2, n))
    finish = submit + value
    request = np.exp(4 + series + 1.5)
    return submit, finish, series, value, request, rng.integers(1, 8, n).astype(float)


def test_vectorised_features_equal_the_pure_python_ones():
    submit, finish, series, value, request, procs = _table()
    log_size = np.log(np.random.default_rng(2).choice([1e3, 2e3, 4e3], len(submit)))
    X = history_features(submit, finish, series, value, request, procs, log_size)
    for j in (0, 5, 50, 150, 399):
        state = SeriesState()
        done = [i for i in np.argsort(finish, kind="stable") if series[i] == series[j] and finish[i] <= submit[j]]
        for i in done:
            state.observe(value[i], request[i], log_size[i])
        assert features_from_state(state, request[j], procs[j], log_size[j]) == pytest.approx(list(X[j]))


def test_quantreg_fits_an_upper_quantile():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, 3000)
    y = 1.0 + 2.0 * x + rng.normal(0, 0.5, 3000)
    X = np.column_stack([np.ones_like(x), x, np.zeros_like(x)])  # a constant column gets coefficient 0
    coef = fit_quantreg(X, y, 0.9)
    assert coef[1] == pytest.approx(2.0, abs=0.15) and coef[2] == 0.0
    share_below = np.mean(y <= X @ np.array(coef))
    assert share_below == pytest.approx(0.9, abs=0.03)


def test_quantreg_needs_enough_rows():
    with pytest.raises(InvalidJobSpecError, match="at least"):
        fit_quantreg(np.ones((3, 4)), np.ones(3), 0.9)


def test_online_margin_holds_the_target_rate():
    rng = np.random.default_rng(4)
    margin = OnlineMargin(alpha=0.05, gamma=0.05, series_gamma=0.1, min_obs=5)
    hits = []
    for _ in range(4000):
        g, s = margin.current("a")
        used = margin.margin("a")
        residual = rng.normal(0.0, 1.0)  # prediction 0, noise 1: needs a margin near 1.64
        hits.append(residual > used)
        margin.update("a", residual - g, residual - s)
    assert np.mean(hits[1000:]) == pytest.approx(0.05, abs=0.015)
    assert margin.margin("a") == pytest.approx(1.64, abs=0.5)


def test_online_loop_is_calibrated_and_never_above_the_request():
    submit, finish, series, value, request, procs = _table(n=3000)
    from airflow_provider_hpcai.advisor.online import JobTable

    result = run_online(JobTable(submit, finish, series, value, request, procs), TargetSpec(quantile=0.9))
    test = (np.arange(3000) >= result.test_start) & result.predicted
    assert result.exceeded[test].mean() == pytest.approx(0.10, abs=0.02)
    assert np.all(result.limit <= request) and result.refits >= 3
    assert np.mean(result.limit[test] < request[test]) > 0.5  # it does tighten most limits


def test_compact_predict_equals_statsmodels_predict():
    records = synthetic_records()
    model, figures = train_compact(records, (TargetSpec(name="runtime", abstain_ratio=10.0, floor=1.0),))
    assert figures["runtime"]["jobs"] == 120
    from statsmodels.regression.quantile_regression import QuantReg

    table, _ = table_from_records(records, "runtime")
    X = history_features(table.submit, table.finish, table.series, table.value, table.request, table.procs,
                         table.log_size)
    keep = np.flatnonzero((X.max(axis=0) - X.min(axis=0) > 1e-12) | (np.arange(X.shape[1]) == 0))
    fitted = QuantReg(np.log(table.value), X[:, keep]).fit(q=0.93, max_iter=2000, p_tol=1e-5)
    target = model.targets["runtime"]
    state = model.series["task:sim.heat"]["runtime"]
    features = features_from_state(state, 7200.0, 4.0, math.log(512))
    expected = float(fitted.predict(np.array(features)[keep][None, :])[0])
    assert target.raw(features) == pytest.approx(expected, rel=1e-9)
    out = model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "nx": 512},
                        Resources(ntasks=4, time_limit=7200, memory="16G"))
    assert out["time_limit"] == pytest.approx(math.exp(expected + target.margin("task:sim.heat")))


def test_compact_model_predicts_size_scaling_and_falls_back(tmp_path):
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"), TargetSpec(
        name="memory", quantile=0.99, alpha=0.01, floor=256 * 1024**2, abstain_ratio=0.9)))
    model = CompactModel.from_dict(json.loads(json.dumps(model.to_dict())))  # JSON round trip
    req = Resources(ntasks=4, time_limit=7200, memory="16G")
    small = model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "nx": 256}, req)
    big = model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "nx": 1024}, req)
    # heat: about 2 min per 256 cells, 1 GB per 256 cells; the request is 2 h and 16 GiB
    assert 120 < small["time_limit"] < big["time_limit"] < 7200
    assert 1e9 < small["memory"] < big["memory"] < 16 * 1024**3
    unknown = model.predict({"dag_id": "sim", "task_id": "new", "owner": "alice"}, req)
    assert unknown["time_limit"] is None and unknown["reasons"]["time_limit"] == "no history for this task"
    no_limit = model.predict({"dag_id": "sim", "task_id": "heat"}, Resources(ntasks=4))
    assert no_limit["time_limit"] is None and no_limit["memory"] is None
    start = time.perf_counter()
    for _ in range(1000):
        model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "nx": 512}, req)
    assert (time.perf_counter() - start) / 1000 < 1e-3


def test_damaged_compact_model_is_rejected():
    with pytest.raises(InvalidJobSpecError, match="not a compact"):
        CompactModel.from_dict({"format": "other"})
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),))
    data = model.to_dict()
    data["targets"]["runtime"]["coef"] = [1.0]
    with pytest.raises(InvalidJobSpecError, match="coefficients"):
        CompactModel.from_dict(data)


def test_training_without_history_says_what_to_do():
    with pytest.raises(InvalidJobSpecError, match="not enough job history"):
        train_compact(synthetic_records()[:5], (TargetSpec(name="runtime"),))


def test_kill_calibration_learns_of_a_kill_when_it_happens():
    """A burst of long jobs submitted every minute: kills are known at submission + limit, long
    before the killed jobs would have ended, so the kill calibration stops the burst sooner."""
    from airflow_provider_hpcai.advisor.online import JobTable, run_online

    rng = np.random.default_rng(1)
    n = 3000
    submit = np.arange(n) * 600.0
    submit[2000:] = submit[2000] + 60.0 * np.arange(n - 2000)
    run = 500.0 * rng.lognormal(0.0, 0.1, n)
    burst = (np.arange(n) >= 2000) & (np.arange(n) < 2200)
    run[burst] = 5000.0
    table = JobTable(submit, submit + run, np.zeros(n, dtype=np.int64), run, np.full(n, 7200.0), np.ones(n))
    kills = {}
    for calibration in ("exceedance", "kills"):
        result = run_online(table, TargetSpec(calibration=calibration))
        kills[calibration] = int((run > result.limit)[burst].sum())
    assert kills["kills"] < 0.6 * kills["exceedance"], kills


def test_a_new_image_version_is_not_judged_by_the_old_images_usage():
    from airflow_provider_hpcai.advisor.history import record_from_accounting

    old = [record_from_accounting(r.to_dict() | {"state": r.state, "requested": {
        "ntasks": 4, "cpus_per_task": 1, "memory": 16 * 1024**3, "time_limit": 7200}},
        {"dag_id": "sim", "task_id": r.task_id, "owner": "alice", "kernel": r.kernel, "image": "stage:1.0",
         **r.size_params}) for r in synthetic_records()]
    assert {r.series for r in old} == {"task:sim.heat@stage:1.0", "task:sim.wave@stage:1.0"}
    model, _ = train_compact(old, (TargetSpec(name="runtime"),))
    req = Resources(ntasks=4, time_limit=7200)
    same = model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "image": "stage:1.0", "nx": 256}, req)
    assert 120 < same["time_limit"] < 7200  # the image it ran in: advised from its history
    new = model.predict({"dag_id": "sim", "task_id": "heat", "owner": "alice", "image": "stage:2.0", "nx": 256}, req)
    assert new["time_limit"] is None and "image stage:2.0" in new["reasons"]["time_limit"]


def test_the_operators_advisor_key_carries_its_container_image():
    from airflow.sdk import DAG

    from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

    with DAG("img_dag", schedule=None):
        bare = SlurmJobOperator(task_id="bare", script="true")
        boxed = SlurmJobOperator(task_id="boxed", script="true", container="/img/stage-2.0")
    assert "image" not in bare.advisor_key()
    assert boxed.advisor_key()["image"] == "/img/stage-2.0"
