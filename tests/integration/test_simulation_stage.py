"""The simulation stage for real: SimulationOperator running small kernels (seconds) with MPI on
the local backend, on the local Slurm cluster, and in ``airflow dags test`` of the example DAG."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.operators.simulation import SimulationOperator
from tests.support import make_context, run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.mpi]

SEISMIC = {"nx": 64, "nz": 32, "steps": 20, "sponge_cells": 8, "progress_lines": 2}


def make_op(**kwargs) -> SimulationOperator:
    with DAG("sim_it", schedule=None):
        return SimulationOperator(task_id="quake", kernel="seismic", kernel_params=dict(SEISMIC), ranks=2,
                                  poll_interval=1, **kwargs)


def test_two_ranks_on_the_local_backend(tmp_path: Path) -> None:
    op = make_op(backend="local", workdir=str(tmp_path), job_resources={"memory": "1500M", "time_limit": 300})
    out = op.execute(make_context(run_id="it__local"))
    summary = out["summary"]
    assert summary["kernel"] == "seismic" and summary["ranks"] == 2 and summary["finite"] is True
    assert summary["steps"] == 20 and summary["decomposition"][0] * summary["decomposition"][1] == 2
    assert out["output_dir"].startswith(str(tmp_path)) and (Path(out["output_dir"]) / "summary.json").exists()
    job = out["job"]
    assert job["state"] == "COMPLETED" and job["requested"]["ntasks"] == 2
    assert job["max_rss_bytes"] > 50 * 2**20  # two Python ranks with numpy, measured over the whole tree
    stdout = Path(job["stdout_path"]).read_text()
    assert "progress: step 20/20" in stdout and "mpiexec -n 2" in stdout


def test_the_local_memory_limit_stops_an_mpi_run(tmp_path: Path) -> None:
    op = make_op(backend="local", workdir=str(tmp_path), job_resources={"memory": "60M", "time_limit": 300})
    with pytest.raises(exc.SlurmOutOfMemory) as info:
        op.execute(make_context(run_id="it__oom"))
    assert info.value.result["max_rss_bytes"] > 60 * 2**20
    assert "Exceeded job memory limit" in str(info.value)
    pgid, deadline = op._ref.extra["pid"], time.monotonic() + 5
    while time.monotonic() < deadline:  # every rank and the MPI launcher went with the job
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"processes of the killed job's group {pgid} are still running")


@pytest.mark.slurm
def test_two_ranks_on_the_slurm_cluster(slurm_env: dict[str, str], shared_workdir: str) -> None:
    op = make_op(backend="slurm", conn_id="slurm_local", deferrable=False, workdir=shared_workdir,
                 job_resources={"memory": "1500M", "time_limit": 300})
    out = op.execute(make_context(run_id="it__slurm"))
    summary, job = out["summary"], out["job"]
    assert summary["ranks"] == 2 and summary["finite"] is True
    assert out["output_dir"] == f"{shared_workdir}/hpcai-sim/sim_it/it__slurm/quake"
    assert job["state"] == "COMPLETED" and job["node_list"] == slurm_env["HPCAI_SLURM_NODE"]
    assert job["transport"] == "local" and re.fullmatch(r"\d+", job["job_id"])
    record = json.loads(Path(out["output_dir"], "hpcai-input.json").read_text())
    assert record == SEISMIC


@pytest.mark.slow
def test_example_dag_runs_end_to_end(airflow_home: str, tmp_path: Path) -> None:
    rc, log = run_dags_test(airflow_home, "hpcai_simulation_example", timeout=300,
                            AIRFLOW__HPCAI__LOCAL_WORK_DIR=str(tmp_path / "jobs"))
    assert rc == 0, log[-5000:]
    assert re.search(r"seismic on 2 ranks: peak surface velocity \S+ m/s", log), log[-5000:]
    assert "climate: 60 steps" in log  # the templated parameter reached the kernel as a number
    assert "progress: step 120/120" in log  # kernel output streamed into the task log
    assert re.search(r"DagRun Finished: dag_id=hpcai_simulation_example.*state=success", log)
    assert list((tmp_path / "jobs").glob("hpcai-*/hpcai-sim/hpcai_simulation_example/*/seismic_basin/summary.json"))
