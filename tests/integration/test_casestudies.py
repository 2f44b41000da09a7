"""The case-study DAGs end to end with `airflow dags test`: tiny sizes on the local backend, and the
climate and seismic ones on the real Slurm cluster. A storm-free run maps zero analyses."""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import airflow_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIMATE = {"nx": 48, "ny": 48, "steps": 120, "ranks": 2}
SEISMIC = {"sources": [0.5], "magnitudes": [5.0], "soils": ["rock", "basin"], "nx": 96, "nz": 48, "steps": 160,
           "sponge_cells": 10}
FACTORY = {"buffers": [0, 2, 6], "staffing": [2, 3], "scenarios": ["no_shortage", "severe_shortage"],
           "scenario_probabilities": {"no_shortage": 0.5, "severe_shortage": 0.5}, "replications": 2,
           "horizon": 1500.0, "warmup": 100.0, "confirm_replications": 4}


def dags_test(home: str, dag_id: str, conf: dict, tmp_path: Path, **env: str) -> tuple[str, str]:
    """Run the DAG; return (its log, its results folder)."""
    airflow = str(Path(sys.executable).parent / "airflow")
    results = tmp_path / "results"
    proc = subprocess.run([airflow, "dags", "test", dag_id, "-c", json.dumps(conf)], capture_output=True, text=True,
                          check=False, timeout=300, env=airflow_env(home, HPCAI_RESULTS_DIR=str(results),
                                                       AIRFLOW__HPCAI__LOCAL_WORK_DIR=str(tmp_path / "jobs"), **env))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert re.search(rf"DagRun Finished: dag_id={dag_id},.*state=success", log), log[-6000:]
    folders = glob.glob(str(results / dag_id / "*"))
    assert len(folders) == 1, folders
    return log, folders[0]


def task_states(home: str, dag_id: str, log: str) -> dict[str, list[str]]:
    run_id = re.search(rf"DagRun Finished: dag_id={dag_id},.*?run_id=([^,]+),", log).group(1)
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), "tasks", "states-for-dag-run", dag_id, run_id,
                          "-o", "json"], capture_output=True, text=True, timeout=120, env=airflow_env(home), check=True)
    states: dict[str, list[str]] = {}
    for row in json.loads(out.stdout[out.stdout.index("["):]):
        states.setdefault(row["task_id"], []).append(row["state"])
    return states


def test_climate_maps_one_analysis_per_storm_locally(airflow_home: str, tmp_path: Path) -> None:
    log, folder = dags_test(airflow_home, "climate_adaptive", CLIMATE, tmp_path)
    result = json.loads(Path(folder, "rainfall.json").read_text())
    n = result["n_storms"]
    assert n >= 1 and f"{n} storm cell(s) detected; {n} analysis task(s) mapped" in log
    assert result["n_analysed"] == n and all(s["analysed"] for s in result["storms"])
    assert result["total_m3"] == pytest.approx(result["storms_m3"] + result["background_m3"], rel=1e-12)
    assert "rank 1" in log or "on 2 rank(s)" in log  # the climate run used MPI
    assert os.path.getsize(Path(folder, "rainfall_map.png")) > 10_000 and Path(folder, "storm_panels.png").exists()
    assert "data:image/png;base64," in Path(folder, "report.html").read_text()


def test_storm_free_run_maps_zero_tasks(airflow_home: str, tmp_path: Path) -> None:
    log, folder = dags_test(airflow_home, "climate_adaptive", {**CLIMATE, "storm_threshold_mm_h": 1000.0}, tmp_path)
    assert "0 storm cell(s) detected; 0 analysis task(s) mapped" in log
    result = json.loads(Path(folder, "rainfall.json").read_text())
    assert result["n_storms"] == 0 and result["storms_m3"] == 0 and result["background_m3"] == result["total_m3"]
    states = task_states(airflow_home, "climate_adaptive", log)
    assert states["storm_rainfall"] == ["skipped"]  # what the Airflow UI shows: mapped over nothing
    assert states["rainfall_totals"] == ["success"] and states["report"] == ["success"]


def test_seismic_ensemble_locally(airflow_home: str, tmp_path: Path) -> None:
    log, folder = dags_test(airflow_home, "seismic_risk", {**SEISMIC, "sigma_ln": 0.0}, tmp_path)
    assert "2 scenario(s) planned" in log
    hazard = json.loads(Path(folder, "hazard.json").read_text())
    assert hazard["n_scenarios"] == 2 and hazard["n_sites"] > 5
    for curve in hazard["curves"].values():  # annual probabilities: non-increasing, at most 1 - exp(-rate)
        assert all(a >= b for a, b in itertools.pairwise(curve))
        assert max(curve) <= 1 - math.exp(-hazard["events_per_year"]) + 1e-12
    # sigma 0: the probability at the level is a weighted count of the two equally weighted scenarios
    assert set(hazard["p_exceed_level_sites"]) <= {0.0, 0.5, 1.0}
    assert Path(folder, "risk_map.png").exists() and Path(folder, "hazard_curves.png").exists()


def test_manufacturing_recommendation_is_confirmed_locally(airflow_home: str, tmp_path: Path) -> None:
    log, folder = dags_test(airflow_home, "manufacturing_optimization", FACTORY, tmp_path)
    result = json.loads(Path(folder, "result.json").read_text())
    rec = result["recommendation"]
    assert rec["buffer"] in range(7) and rec["staff"] in (2, 3)
    assert [row["scenario"] for row in result["check"]["scenarios"]] == ["no_shortage", "severe_shortage"]
    for row in result["check"]["scenarios"]:  # confirmation runs really ran, with fresh seeds
        assert row["throughput"]["simulated"] > 0 and abs(row["throughput"]["rel_error"]) < 0.5
    assert "sweep point(s)" in log and Path(folder, "throughput_vs_buffer.png").exists()


@pytest.mark.slurm
def test_climate_and_seismic_on_the_slurm_cluster(airflow_home: str, tmp_path: Path, slurm_env: dict[str, str],
                                                  shared_workdir: str) -> None:
    on_slurm = {"backend": "slurm", "conn_id": "slurm_local", "workdir": shared_workdir}
    log, folder = dags_test(airflow_home, "climate_adaptive", {**CLIMATE, **on_slurm}, tmp_path / "c")
    result = json.loads(Path(folder, "rainfall.json").read_text())
    assert result["run_dir"].startswith(shared_workdir) and result["n_analysed"] == result["n_storms"] >= 1
    assert re.search(r"Slurm job \d+|job_id': '\d+'", log), log[-4000:]
    log, folder = dags_test(airflow_home, "seismic_risk", {**SEISMIC, **on_slurm}, tmp_path / "s")
    hazard = json.loads(Path(folder, "hazard.json").read_text())
    assert hazard["n_scenarios"] == 2
    runs = glob.glob(f"{shared_workdir}/**/scenario-*/summary.json", recursive=True)
    assert len(runs) == 2 and all(json.loads(Path(p).read_text())["finite"] for p in runs)
