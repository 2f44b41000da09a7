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
