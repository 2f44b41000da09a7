"""Shortest-estimate-first backfilling, the last-2 estimator, extra history candidates, and what
the advised limits save (core-hours and kWh), also in the demo report's advisor section."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.energy import DEFAULT_POWER, limit_savings
from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, extra_candidate_limits, load_trace
from airflow_provider_hpcai.advisor.guard import GuardSpec, guarded_limits
from airflow_provider_hpcai.advisor.replay import easy_backfill
from airflow_provider_hpcai.advisor.swf import parse_swf
from airflow_provider_hpcai.exceptions import InvalidJobSpecError


def _queue():
    """10 processors. A (6 procs, 100 s) and X (4 procs, 50 s) fill the machine; the head H needs
    all 10; then B (4 procs, 40 s) and C (4 procs, 10 s) wait. When X ends at 50 s, H is reserved
    at 100 s and both B and C could backfill, but only one fits at a time."""
    submit = [0.0, 0.0, 1.0, 2.0, 3.0]
    procs = [6, 4, 10, 4, 4]
    run = [100.0, 50.0, 100.0, 40.0, 10.0]
    return submit, procs, run


def test_sjf_backfill_starts_the_shortest_candidate_first():
    submit, procs, run = _queue()
    fcfs = easy_backfill(submit, procs, run, run, run, 10, run)
    sjf = easy_backfill(submit, procs, run, run, run, 10, run, backfill_order="sjf")
    # FCFS backfills B (50 + 40 <= 100); C fits only once B has ended (90 + 10 <= 100).
    assert fcfs.end[3] == 90.0 and fcfs.end[4] == 100.0
    # SJF backfills C first (ends at 60 s), then B still fits before the reservation.
    assert sjf.end[4] == 60.0 and sjf.end[3] == 100.0
    assert fcfs.end[2] == sjf.end[2] == 200.0  # the head's reservation is kept either way
    with pytest.raises(ValueError, match="backfill_order"):
        easy_backfill(submit, procs, run, run, run, 10, run, backfill_order="random")


def test_last2_estimator_and_sjf_replays_are_reported(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    result = evaluate_trace(data, calibration="guarded", estimator="last2", replay=("users", "advisor"))
    assert result["estimator"] == "last2"
    for key in ("estimates_only", "users_sjf", "estimates_only_sjf"):
        assert result[key]["avebsld"] >= 1.0 and result[key]["mean_wait_s"] >= 0.0
    json.dumps(result, default=float)
    with pytest.raises(ValueError, match="estimator"):
        evaluate_trace(data, calibration="guarded", estimator="oracle", schedule=False)
    with pytest.raises(ValueError, match="estimator"):
        evaluate_trace(data, calibration="guarded", estimate_mode="oracle", schedule=False)


def test_each_mode_plans_with_its_own_estimator(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    both = evaluate_trace(data, calibration="guarded", estimate_quantile=0.3, estimate_mode="last2",
                          replay=("users", "advisor"), sjf=False)
    last2 = evaluate_trace(data, calibration="guarded", estimator="last2", replay=("users", "advisor"), sjf=False)
    q03 = evaluate_trace(data, calibration="guarded", estimate_quantile=0.3, replay=("users", "advisor"), sjf=False)
    assert both["estimator"] == "quantile" and both["estimate_mode"] == "last2"
    assert both["estimates_only"] == last2["estimates_only"]  # estimate mode: the last-2 estimate
    assert both["policies"]["advisor"]["avebsld"] == q03["policies"]["advisor"]["avebsld"]  # enforce: q0.3


def test_an_extra_candidate_is_used_when_it_is_the_only_one_that_saves():
    # One user, steady 600 s jobs asking 7200 s; the model's prediction is missing (NaN -> no
    # model candidate), the max-of-20 candidate is off, the extra candidate says 900 s.
    n = 60
    submit = np.arange(n) * 1000.0
    run = np.full(n, 600.0)
    guard = GuardSpec(max20_factor=0.0, profit_window=5)
    out = guarded_limits(submit=submit, run=run, request=np.full(n, 7200.0), procs=np.ones(n),
                         series=np.zeros(n, int), raw=np.full(n, np.log(7000.0)), max20=np.full(n, np.nan),
                         test_start=10, guard=guard, extra=[np.full(n, 900.0)])
    assert out.advised[10:].all() and (out.candidate[10:] == 1).all()
    assert np.all(out.limit[10:] == 900.0)
    with pytest.raises(InvalidJobSpecError, match="unknown extra candidates"):
        GuardSpec(extra_candidates=("oracle",))


def test_extra_candidates_follow_the_users_same_request_jobs(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    same_request, user5 = extra_candidate_limits(data, ("user_request_max20", "user_max5"))
    known = np.isfinite(same_request)
    assert known.sum() > len(data) // 2
    # never below 1.2 x the job's own user's last finished run with the same request
    assert np.all(same_request[known] > 0) and np.isfinite(user5).sum() >= known.sum()


def test_limit_savings_known_answers():
    # job 1: 2 cores, runs 1 h, asked 3 h, limit 1.5 h -> saves 2 x 1.5 = 3 core-h unused
    # job 2: 1 core, runs 2 h, asked 4 h, limit 1 h -> killed: 1 core-h lost, rerun wastes 2 core-h
    s = limit_savings([2, 1], [3600.0, 7200.0], [10800.0, 14400.0], [5400.0, 3600.0])
    assert s["jobs"] == 2 and s["advised"] == 2 and s["killed"] == 1
    assert math.isclose(s["users_waste_core_hours"], 2 * 2 + 1 * 2)
    assert math.isclose(s["advisor_waste_core_hours"], 2 * 0.5 + 1 + 2)
    assert math.isclose(s["core_hours_saved"], 6 - 4)
    idle = DEFAULT_POWER.idle_watts_per_core
    expected = (6 * idle - (3 * idle + 1 * (DEFAULT_POWER.watts_per_core + idle))) / 1000
    assert math.isclose(s["kwh_saved"], expected)
    assert limit_savings([], [], [], [])["core_hours_saved"] == 0.0


def test_demo_report_says_what_the_advisor_saved(tmp_path):
    from airflow_provider_hpcai.advisor.bootstrap import synthetic_history
    from airflow_provider_hpcai.advisor.history import JobRecord
    from airflow_provider_hpcai.casestudies.report import advisor_panels

    records = synthetic_history()
    t = records[-1].submit_time
    for i in range(60):  # a case-study task that asks an hour and runs about two minutes on 4 cores
        records.append(JobRecord(job_id=f"d{i}", submit_time=t + 600.0 * (i + 1), state="COMPLETED",
                                 elapsed_seconds=110.0 + (i % 5) * 5, requested_seconds=3600.0, cpus=4,
                                 user="demo", dag_id="climate_adaptive", task_id="rainfall", source="slurm"))
    folder = tmp_path / "training" / "run1"
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r.to_dict()) for r in records))
    _, stats = advisor_panels(str(tmp_path))
    saved = stats["savings"]
    assert saved["jobs"] > 0 and saved["advised"] > 0 and saved["killed"] <= 0.1 * saved["jobs"]
    assert saved["core_hours_saved"] > 0 and saved["kwh_saved"] > 0
    assert saved["core_hours_saved"] <= saved["users_waste_core_hours"]


def test_job_energy_reads_consumed_energy_from_a_task_result():
    from airflow_provider_hpcai.advisor.energy import job_energy_kwh

    result = {"elapsed_seconds": 3600.0, "requested": {"ntasks": 2, "cpus_per_task": 4},
              "efficiency": {"consumed_energy_joules": 7_200_000}}
    assert job_energy_kwh(result) == (2.0, "ConsumedEnergy")
    kwh, source = job_energy_kwh({**result, "efficiency": {"consumed_energy_joules": None}})
    assert source == "model" and math.isclose(
        kwh, 8 * (DEFAULT_POWER.watts_per_core + DEFAULT_POWER.idle_watts_per_core) / 1000)


def test_cli_estimate_mode(swf_file, capsys):
    from airflow_provider_hpcai.advisor.cli import main

    args = ["advisor", "evaluate", "--swf", str(swf_file), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate_mode"] == "last2" and out["estimator"] == "quantile" and out["estimate_quantile"] == 0.3
    for key in ("estimates_only", "users_sjf", "estimates_only_sjf"):
        assert out[key]["avebsld"] >= 1.0
    assert main([*args, "--estimate-mode", "quantile"]) == 0
    assert json.loads(capsys.readouterr().out)["estimate_mode"] == "quantile"
    with pytest.raises(SystemExit):
        main([*args, "--estimate-mode", "oracle"])
