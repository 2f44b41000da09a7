from __future__ import annotations

import json
import os

import numpy as np
import pytest

from airflow_provider_hpcai.advisor.cli import main
from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, format_table, load_trace
from airflow_provider_hpcai.advisor.memsim import evaluate_memory, generate_memory_workload
from airflow_provider_hpcai.advisor.swf import parse_swf

TRACES = "/work/shared/traces"


def test_evaluation_on_a_synthetic_trace(swf_text):
    data = load_trace(parse_swf(swf_text.splitlines()))
    assert data.capacity == 64 and len(data) == 1200
    result = evaluate_trace(data)
    users, advisor = result["policies"]["users"], result["policies"]["advisor"]
    assert users["kill_rate"] == 0.0 and users["waste_cut"] == 0.0
    # users over-request 1.5-6x on steady jobs: the advisor cuts most of the waste at few kills
    assert advisor["kill_rate"] <= result["model"]["target_rate"] + 0.015 and advisor["waste_cut"] > 0.4
    assert advisor["waste_cut"] > result["policies"]["1.2x_max20"]["waste_cut"] - 0.1
    assert result["model"]["calibrated"]
    assert result["estimates_only"]["avebsld"] <= users["avebsld"] + 1e-9
    table = format_table([result])
    assert "advisor" in table and "trace" in table


def test_limits_never_exceed_the_request_and_warmup_is_untouched(swf_text):
    from airflow_provider_hpcai.advisor.evaluate import baseline_limits

    data = load_trace(parse_swf(swf_text.splitlines()))
    limits = baseline_limits(data, 360)
    for limit in limits.values():
        assert np.all(limit <= data.request) and np.all(limit[:360] == data.request[:360])


def test_cli_evaluate_json(swf_file, capsys):
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--json", "--no-schedule"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["jobs"] == 1200 and "advisor" in out["policies"] and "avebsld" not in out["policies"]["users"]


def test_cli_evaluate_human(swf_file, capsys):
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--quantile", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "| synthetic.swf |" in out and "q0.9" in out


def test_memory_generator_is_calibrated_and_the_advisor_beats_vpa():
    workload = generate_memory_workload(n_jobs=4000, n_series=60, seed=11)
    assert workload.efficiency == pytest.approx(0.19, abs=0.01)
    result = evaluate_memory(workload)
    assert result["users"]["oom_rate"] == 0.0
    assert result["advisor"]["oom_rate"] <= 0.015
    assert result["advisor"]["unused_cut_vs_users"] >= 0.5
    assert result["advisor_at_vpa_oom_rate"]["unused_cut_vs_vpa"] > 0.1


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(TRACES), reason="shared traces folder absent")
def test_real_trace_kth_without_scheduling():
    result = evaluate_trace(os.path.join(TRACES, "KTH-SP2-1996-2.1.swf"), schedule=False)
    assert result["jobs"] > 28000 and result["policies"]["advisor"]["kill_rate"] <= 0.05
    assert result["model"]["calibrated"]


def test_cli_train_from_history_exports_a_champion(tmp_path, capsys):
    from airflow_provider_hpcai.advisor.cache import ChampionCache
    from airflow_provider_hpcai.advisor.history import HistoryStore

    from .conftest import synthetic_records

    home = tmp_path / "home"
    assert main(["advisor", "train", "--home", str(home), "--no-register"]) == 2  # no history yet
    assert "no job history" in capsys.readouterr().err
    HistoryStore(home).add(synthetic_records(200))
    assert main(["advisor", "train", "--home", str(home), "--no-register"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["targets"]["runtime"]["jobs"] == 200 and "kill_rate" in out["metrics"]["advisor"]
    model = ChampionCache(str(home)).get()
    decision = model.predict({"dag_id": "sim", "task_id": "wave", "nx": 1024}, {"ntasks": 4, "time_limit": 7200,
                                                                                 "memory": 16 * 1024**3})
    assert decision["time_limit"] < 7200 and decision["memory"] < 16 * 1024**3


def _flat_trace(n: int):
    from airflow_provider_hpcai.advisor.evaluate import TraceData

    ones = np.ones(n)
    return TraceData(name="flat", submit=np.arange(n, dtype=float), run=100.0 * ones, request=1000.0 * ones,
                     procs=ones, user=np.zeros(n, dtype=np.int64), capacity=1, series=np.zeros(n, dtype=np.int64),
                     skipped_lines=0, dropped_jobs=0)


def test_kill_rate_and_worst_window_have_a_known_answer():
    from airflow_provider_hpcai.advisor.evaluate import limit_figures, worst_window_rate

    data = _flat_trace(6000)
    test = np.arange(6000) >= 1000  # 5000 test jobs
    limit = np.full(6000, 200.0)  # every run (100 s) fits: no kills ...
    limit[3000:3100] = 50.0  # ... except a burst of 100 consecutive test jobs
    figures = limit_figures(data, limit, test)
    assert figures["kill_rate"] == pytest.approx(100 / 5000)
    assert figures["worst_window_kill_rate"] == pytest.approx(100 / 1000) and figures["kill_window"] == 1000
    assert limit_figures(data, limit, test, kill_window=50)["worst_window_kill_rate"] == 1.0
    assert limit_figures(data, limit, test, kill_window=400)["worst_window_kill_rate"] == pytest.approx(0.25)
    # the same 100 kills spread evenly: the worst window is about the mean
    spread = np.full(6000, 200.0)
    spread[1000::50] = 50.0
    assert limit_figures(data, spread, test)["worst_window_kill_rate"] == pytest.approx(0.02)
    assert worst_window_rate([True, False], 1000) == 0.5 and worst_window_rate([], 10) == 0.0
    with pytest.raises(ValueError):
        worst_window_rate([True], 0)


def test_every_policy_reports_kills_and_worst_window(swf_text):
    result = evaluate_trace(load_trace(parse_swf(swf_text.splitlines())), schedule=False, kill_window=100)
    assert result["kill_window"] == 100
    for figures in result["policies"].values():
        assert figures["kill_window"] == 100
        assert figures["kill_rate"] <= figures["worst_window_kill_rate"] <= 1.0
    assert result["policies"]["users"]["worst_window_kill_rate"] == 0.0
    assert "worst" in format_table([result])


def test_cli_reports_worst_window(swf_file, capsys):
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--json", "--no-schedule", "--kill-window", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kill_window"] == 200
    assert all("worst_window_kill_rate" in p and "kill_rate" in p for p in out["policies"].values())
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--no-schedule"]) == 0
    human = capsys.readouterr().out
    assert "worst window of 1000 test jobs" in human and "advisor" in human
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--kill-window", "0"]) == 2


def test_kill_calibration_holds_the_budget(swf_text):
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.exceptions import InvalidJobSpecError

    data = load_trace(parse_swf(swf_text.splitlines()))
    default = evaluate_trace(data, schedule=False)
    assert default["model"]["spec"]["calibration"] == "exceedance"  # the existing behaviour stays the default
    rates = {}
    for budget in (0.05, 0.02):
        result = evaluate_trace(data, schedule=False, calibration="kills", kill_budget=budget)
        advisor = result["policies"]["advisor"]
        assert result["model"]["target_rate"] == budget and result["model"]["calibrated"]
        assert advisor["kill_rate"] <= budget + 0.015 and advisor["waste_cut"] > 0.4  # 840 test jobs: small-sample slack
        rates[budget] = advisor["kill_rate"]
    assert rates[0.02] < rates[0.05]
    with pytest.raises(InvalidJobSpecError):
        TargetSpec(calibration="kils")
    with pytest.raises(InvalidJobSpecError):
        TargetSpec(calibration="kills", kill_budget=0.0)


def test_cli_kill_budget(swf_file, capsys):
    args = ["advisor", "evaluate", "--swf", str(swf_file), "--json", "--no-schedule", "--calibration", "kills"]
    assert main([*args, "--kill-budget", "0.03"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["spec"]["kill_budget"] == 0.03 and out["model"]["target_rate"] == 0.03
    assert main([*args, "--kill-budget", "1.5"]) == 2


def test_cli_human_names_the_kill_budget(swf_file, capsys):
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--no-schedule", "--calibration", "kills"]) == 0
    assert "of advised jobs killed (budget 5.0 %)" in capsys.readouterr().out


def test_kills_on_an_idle_machine_make_enforce_wait_longer_whatever_the_scheduler():
    from airflow_provider_hpcai.advisor.evaluate import (
        TraceData,
        enforce_wait_bound,
        limit_figures,
        schedule_figures,
    )

    n, ones, zeros = 200, np.ones(200), np.zeros(200, dtype=np.int64)
    # one processor, a 100 s job every 200 s: nobody waits with the users' requests
    data = TraceData(name="idle", submit=200.0 * np.arange(n), run=100.0 * ones, request=1000.0 * ones,
                     procs=ones, user=zeros, capacity=1, series=zeros, skipped_lines=0, dropped_jobs=0)
    test = np.arange(n) >= 100
    limit = np.full(n, 150.0)
    limit[150:160] = 50.0  # ten test jobs cut below their run time: killed after 50 s, rerun
    users = {**limit_figures(data, data.request, test), **schedule_figures(data, data.request, data.request, test)}
    enforce = {**limit_figures(data, limit, test), **schedule_figures(data, limit, limit, test)}
    assert users["mean_wait_s"] == 0.0 and users["kill_wait_floor_s"] == 0.0
    assert enforce["kill_wait_floor_s"] == pytest.approx(10 * 50 / 100)
    assert enforce["mean_wait_s"] >= enforce["kill_wait_floor_s"] > users["mean_wait_s"]
    assert enforce_wait_bound(users, enforce) == {"users_mean_wait_s": 0.0, "kill_wait_floor_s": 5.0,
                                                  "reachable": False}
    assert enforce_wait_bound(users, users)["reachable"]


def test_cli_says_when_enforce_cannot_be_as_fast(swf_file, tmp_path, capsys):
    from tests.unit.advisor.conftest import synthetic_swf

    idle = tmp_path / "idle.swf"
    idle.write_text(synthetic_swf(gap=40_000.0))  # jobs hours apart: nobody waits with the requests
    said = {}
    for name, path in (("busy", swf_file), ("idle", idle)):
        assert main(["advisor", "evaluate", "--swf", str(path), "--json"]) == 0
        bound = json.loads(capsys.readouterr().out)["enforce_wait_bound"]
        assert main(["advisor", "evaluate", "--swf", str(path)]) == 0
        said[name] = "enforce cannot wait as little as the users' requests" in capsys.readouterr().out
        assert said[name] == (not bound["reachable"])
    assert said == {"busy": False, "idle": True}
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--json", "--no-schedule"]) == 0
    assert "enforce_wait_bound" not in json.loads(capsys.readouterr().out)


def test_cli_judges_a_log_with_the_sites_own_guard(swf_file, monkeypatch, capsys):
    args = ["advisor", "evaluate", "--swf", str(swf_file), "--json", "--no-schedule"]
    assert main(args) == 0
    shipped = json.loads(capsys.readouterr().out)["model"]["guard"]
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_KILL_BUDGET", "0.02")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_GUARD_EXTRA_CANDIDATES", "user_max20_x1.1,user_procs_max20")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_GUARD_PROBATION", "1")
    assert main([*args, "--site"]) == 0
    site = json.loads(capsys.readouterr().out)["model"]
    assert site["target_rate"] == 0.02 and site["guard"]["kill_budget"] == 0.02
    assert site["guard"]["extra_candidates"] == ["user_max20_x1.1", "user_procs_max20"] != shipped["extra_candidates"]
    assert site["guard"]["probation_clear"] == 1 != shipped["probation_clear"]
    assert main(["advisor", "evaluate", "--swf", str(swf_file), "--no-schedule", "--site"]) == 0
    assert "the site's guard ([hpcai])" in capsys.readouterr().out
    assert main([*args, "--site", "--kill-budget", "0.03"]) == 2  # two budgets: refused, not guessed
    assert "drop --kill-budget" in capsys.readouterr().err
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_GUARD_PROBATION", "three")
    assert main([*args, "--site"]) == 2
    assert "AIRFLOW__HPCAI__ADVISOR_GUARD_PROBATION" in capsys.readouterr().err
