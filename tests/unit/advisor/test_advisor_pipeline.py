"""The training DAG's steps (without MLflow) and the synthetic bootstrap history."""

from __future__ import annotations

import json
import os
import statistics

import pytest

from airflow_provider_hpcai.advisor import pipeline
from airflow_provider_hpcai.advisor.bootstrap import SYNTHETIC_DAG, synthetic_history
from airflow_provider_hpcai.advisor.history import HistoryStore
from airflow_provider_hpcai.advisor.models import CompactModel
from airflow_provider_hpcai.resources import Resources

from .conftest import synthetic_records


def test_synthetic_history_is_reproducible_and_over_requested():
    first, again = synthetic_history(seed=3), synthetic_history(seed=3)
    assert first == again and len(first) == 400
    assert {r.dag_id for r in first} == {SYNTHETIC_DAG} and {r.source for r in first} == {"synthetic"}
    memory_efficiency = statistics.mean(r.max_rss_bytes / r.requested_memory_bytes for r in first)
    time_efficiency = statistics.mean(r.elapsed_seconds / r.requested_seconds for r in first)
    assert 0.15 < memory_efficiency < 0.35 and 0.1 < time_efficiency < 0.3  # like published site studies
    assert [r.submit_time for r in first] == sorted(r.submit_time for r in first)
    with pytest.raises(ValueError, match="at least 8"):
        synthetic_history(3)


def test_small_history_is_bootstrapped_and_a_useful_candidate_comes_out(tmp_path):
    home = str(tmp_path / "home")
    folder = pipeline.run_folder(home, "manual__2026-01-01T00:00:00+00:00")
    gathered = pipeline.gather_history(home, folder, min_jobs=200)  # a fresh install: no history at all
    assert gathered["bootstrapped"] and gathered["stored_jobs"] == 0 and gathered["training_jobs"] == 400

    trained = pipeline.train_candidate(folder)
    assert trained["targets"] == ["memory", "runtime", "runtime_estimate"]  # the last: enforce's time_min
    with open(os.path.join(folder, "candidate.json"), encoding="utf-8") as handle:
        model = CompactModel.from_dict(json.load(handle))
    advice = model.predict({"dag_id": SYNTHETIC_DAG, "task_id": "heat", "owner": "x"},
                           Resources(ntasks=4, time_limit=1920, memory="4G"))
    assert 60 <= advice["time_limit"] < 1920 and advice["memory"] < 4 * 1024**3
    assert model.predict({"dag_id": "real", "task_id": "job"}, Resources(time_limit=600, memory="1G"))[
        "time_limit"] is None  # nothing learned from made-up jobs reaches a real task

    evaluated = pipeline.evaluate_candidate(folder)
    metrics = evaluated["metrics"]
    assert 0 <= metrics["advisor.kill_rate"] <= 0.05 and metrics["advisor.waste_cut"] > 0.5
    assert evaluated["score"] == pytest.approx(metrics["advisor.waste_cut"])  # within the bar: score = waste cut
    assert "memory.advisor.kill_rate" in metrics


def test_enough_real_history_is_used_alone(tmp_path):
    home = str(tmp_path)
    HistoryStore(home).add(synthetic_records(20))
    few = pipeline.gather_history(home, pipeline.run_folder(home, "r0"), min_jobs=100)
    assert few["bootstrapped"] and few["stored_jobs"] == 20 and few["training_jobs"] == 420
    HistoryStore(home).add(synthetic_records(120))
    folder = pipeline.run_folder(home, "r1")
    gathered = pipeline.gather_history(home, folder, min_jobs=100)
    assert not gathered["bootstrapped"] and gathered["training_jobs"] == 120


def test_only_the_newest_run_folders_are_kept(tmp_path):
    made = []
    for i in range(8):
        path = pipeline.run_folder(str(tmp_path), f"run/{i}")
        os.utime(path, (1000 + i, 1000 + i))
        made.append(path)
    left = sorted(os.listdir(tmp_path / "training"))
    assert len(left) <= 6 and os.path.basename(made[-1]) in left and "run_7" in left
    assert "run_0" not in left
