"""The guarded wall-time policy (advisor/guard.py), the energy model and memory from real logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.cli import main
from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, load_trace, worst_window_rate
from airflow_provider_hpcai.advisor.guard import GuardSpec, guarded_limits
from airflow_provider_hpcai.advisor.swf import parse_swf
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

OFF = GuardSpec(max_in_flight=0, probation_clear=0, profit_window=0, brake=0.0, max20_factor=0.0)


def _run(guard, submit, run, request, series, raw, test_start=0):
    n = len(submit)
    return guarded_limits(submit=np.asarray(submit, float), run=np.asarray(run, float),
                          request=np.asarray(request, float), procs=np.ones(n), series=np.asarray(series),
                          raw=np.asarray(raw, float), max20=np.full(n, np.nan), test_start=test_start, guard=guard)


def _burst():
    """One user: 100 steady jobs one after another (600 s each), then 200 submitted within 200 s
    that run 3x as long; the model (raw) still predicts the steady run time."""
    submit = [i * 1000.0 for i in range(100)] + [100_000.0 + i for i in range(200)]
    run = [600.0] * 100 + [1800.0] * 200
    return submit, run, [7200.0] * 300, [0] * 300, [np.log(600.0) + 0.1] * 300


def test_a_burst_bets_at_most_the_in_flight_cap():
    submit, run, request, series, raw = _burst()
    unguarded = _run(dataclasses_replace(OFF, aim=0.001), submit, run, request, series, raw, test_start=50)
    burst = slice(100, 300)
    kills_off = int((np.asarray(run)[burst] > unguarded.limit[burst]).sum())
    assert kills_off == 200  # every job of the burst killed: what the worst window saw on HPC2N
    guarded = _run(GuardSpec(max_in_flight=5, probation_clear=3, profit_window=0, brake=0.0, max20_factor=0.0,
                             aim=0.001),
                   submit, run, request, series, raw, test_start=50)
    kills = int((np.asarray(run)[burst] > guarded.limit[burst]).sum())
    assert kills == 5 and guarded.held["in_flight"] >= 190
    assert (guarded.limit <= np.asarray(request)).all()
    steady = guarded.limit[50:100]
    assert np.median(steady) < 0.2 * 7200  # the steady jobs before the burst are still cut (to about 660 s)


def test_probation_keeps_the_request_until_shadow_limits_hold_again():
    # Sequential jobs of one user: steady, then 10 long ones, then steady again.
    run = [600.0] * 60 + [1800.0] * 10 + [600.0] * 30
    submit = np.cumsum([2000.0] * 100) - 2000.0
    raw = [np.log(600.0) + 0.1] * 100
    guard = GuardSpec(max_in_flight=0, probation_clear=3, profit_window=0, brake=0.0, max20_factor=0.0, aim=0.001)
    result = _run(guard, submit, run, [7200.0] * 100, [0] * 100, raw, test_start=20)
    killed = np.asarray(run) > result.limit
    assert killed.sum() == 1  # the first long job; the other nine ran under probation with the request
    assert result.held["probation"] >= 9 + 3
    assert result.advised[-20:].all()  # three shadow successes after the long run: advised again


def test_a_user_whose_cuts_cost_more_than_they_save_gets_the_request():
    rng = np.random.default_rng(1)
    n = 400
    run = np.where(rng.random(n) < 0.5, 100.0, 3000.0)  # half tiny, half near the request
    submit = np.arange(n) * 5000.0
    raw = np.full(n, np.log(200.0))  # a model that believes the tiny half
    guard = GuardSpec(max_in_flight=0, probation_clear=0, profit_window=10, brake=0.0, max20_factor=0.0, aim=0.5,
                      kill_penalty=1.0)  # a kill costs its attempt (200 s) + 3600 s > the 3400 s a cut saves
    result = _run(guard, submit, run, np.full(n, 3600.0), np.zeros(n, dtype=int), raw, test_start=100)
    assert result.held["not_profitable"] > 100
    blind = _run(dataclasses_replace(guard, profit_window=0), submit, run, np.full(n, 3600.0),
                 np.zeros(n, dtype=int), raw, test_start=100)
    assert (run > result.limit).sum() < 0.6 * (run > blind.limit).sum()


def dataclasses_replace(spec, **changes):
    import dataclasses

    return dataclasses.replace(spec, **changes)


def test_the_brake_holds_the_kill_budget_in_every_window():
    # 40 users, jobs one after another; from job 300 on every job runs 3x its prediction.
    n = 1500
    submit = np.arange(n) * 1000.0
    run = np.where(np.arange(n) < 300, 300.0, 900.0)
    series = np.arange(n) % 40
    raw = np.full(n, np.log(330.0))
    base = {"max_in_flight": 0, "probation_clear": 0, "profit_window": 0, "max20_factor": 0.0, "brake_window": 100}
    free = _run(GuardSpec(**base, brake=0.0), submit, run, np.full(n, 3600.0), series, raw, test_start=100)
    braked = _run(GuardSpec(**base, brake=0.6), submit, run, np.full(n, 3600.0), series, raw, test_start=100)
    assert worst_window_rate((run > free.limit)[100:], 100) > 0.5
    assert worst_window_rate((run > braked.limit)[100:], 100) <= 0.03  # 0.6 x 5 % x 100 jobs
    assert braked.held["brake"] > 300


def test_guard_settings_are_checked():
    with pytest.raises(InvalidJobSpecError, match="kill_budget"):
        GuardSpec(kill_budget=1.5)
    with pytest.raises(InvalidJobSpecError, match="max_in_flight"):
        GuardSpec(max_in_flight=-1)


def test_guarded_evaluation_reports_kills_windows_and_energy(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    result = evaluate_trace(data, schedule=False, calibration="guarded", kill_window=200)
    advisor, users = result["policies"]["advisor"], result["policies"]["users"]
    assert result["model"]["spec"]["calibration"] == "guarded" and result["model"]["target_rate"] == 0.05
    assert advisor["kill_rate"] <= 0.05 and advisor["worst_window_kill_rate"] <= 0.08
    assert advisor["waste_cut"] > 0.3
    assert users["energy_saved_kwh"] == 0.0 and users["killed_core_hours"] == 0.0
    assert advisor["energy_saved_kwh"] > 0 and advisor["energy_kwh"] < users["energy_kwh"]
    assert result["power_model"]["watts_per_core"] == 3.75
    assert set(result["model"]["held"]) >= {"probation", "in_flight", "brake", "not_profitable"}


def test_cli_guarded_json_and_energy_line(swf_file, capsys):
    args = ["advisor", "evaluate", "--swf", str(swf_file), "--no-schedule", "--calibration", "guarded"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all("energy_saved_kwh" in p for p in out["policies"].values())
    assert main(args) == 0
    human = capsys.readouterr().out
    assert "guarded:" in human and "energy saved against the users' requests" in human
    assert main([*args, "--estimate-quantile", "1.5"]) == 2


def test_energy_model_known_answers():
    from airflow_provider_hpcai.advisor.energy import PowerModel, job_energy_kwh, waste_energy_kwh

    power = PowerModel(watts_per_core=4.0, node_idle_watts=100.0, cores_per_node=100, watts_per_gpu=500.0)
    # 1000 killed core-h at (4 + 1) W, 2000 unused core-h at 1 W, 2 GPU-h at 500 W: 5 + 2 + 1 kWh
    assert waste_energy_kwh(1000.0, 2000.0, killed_gpu_hours=2.0, power=power) == pytest.approx(8.0)
    accounted = {"consumed_energy_joules": 7.2e6, "elapsed_seconds": 3600, "requested": {"ntasks": 8}}
    assert job_energy_kwh(accounted, power=power) == (pytest.approx(2.0), "ConsumedEnergy")
    modelled = {"elapsed_seconds": 3600, "requested": {"ntasks": 2, "cpus_per_task": 5, "gpus": 1}}
    assert job_energy_kwh(modelled, power=power) == (pytest.approx(0.55), "model")
    assert job_energy_kwh({}, power=power) == (None, "model")
    with pytest.raises(InvalidJobSpecError, match="watts"):
        PowerModel(watts_per_core=-1.0)
    with pytest.raises(InvalidJobSpecError):
        waste_energy_kwh(-1.0, 0.0)


def _memory_swf(n: int, copied: bool) -> str:
    rng = np.random.default_rng(4)
    lines = ["; MaxProcs: 64"]
    for job in range(1, n + 1):
        request = 1_048_576
        used = request if copied else int(request * rng.uniform(0.05, 0.4))
        fields = [job, job * 600, 0, 500, 4, -1, used, 4, 3600, request, 1, job % 7 + 1, 1, -1, -1, -1, -1, -1]
        lines.append(" ".join(str(f) for f in fields))
    return "\n".join(lines) + "\n"


def test_memory_from_a_log_that_records_it_and_not_from_one_that_copies_the_request():
    from airflow_provider_hpcai.advisor.memsim import evaluate_memory, memory_workload_from_trace

    workload = memory_workload_from_trace(parse_swf(_memory_swf(600, copied=False).splitlines()))
    assert workload is not None and len(workload.table) == 600
    assert 0.05 < workload.efficiency < 0.4
    assert workload.table.request[0] == 1_048_576 * 1024.0 * 4  # per processor x processors, in bytes
    result = evaluate_memory(workload)
    assert result["advisor"]["unused_cut_vs_users"] > 0.3 and result["advisor"]["oom_rate"] <= 0.05
    assert memory_workload_from_trace(parse_swf(_memory_swf(600, copied=True).splitlines())) is None
    assert memory_workload_from_trace(parse_swf(_memory_swf(50, copied=False).splitlines())) is None


def test_a_bolder_estimate_plans_the_schedule_and_never_kills(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    result = evaluate_trace(data, calibration="guarded", estimate_quantile=0.3, replay=("users", "advisor"))
    assert result["estimate_quantile"] == 0.3
    assert "avebsld" in result["policies"]["advisor"] and "avebsld" not in result["policies"]["last2"]
    assert result["estimates_only"]["avebsld"] >= 1.0 and result["estimates_only"]["mean_wait_s"] >= 0.0
    assert "enforce_no_slower_than_users" in result["bar"]
