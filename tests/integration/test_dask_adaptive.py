"""Adaptive Dask worker jobs on the real local Slurm cluster (dask-jobqueue's own ``adapt()``).

A burst of 200 short tasks grows the worker jobs from the minimum (1) toward the maximum (3),
as ``squeue`` shows; after the burst they shrink back to the minimum within the scale-down wait;
the result equals a fixed cluster's. About 60 s.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from typing import Any, Self

import pytest

from airflow_provider_hpcai.hooks.dask import DaskHook
from airflow_provider_hpcai.spec import make_tag

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

SCALE_DOWN_WAIT = 4.0
ADAPTIVE = {"minimum": 1, "maximum": 3, "target_duration": "2s", "interval": "1s",
            "scale_down_wait": f"{SCALE_DOWN_WAIT:g}s"}


def squeue(job_name: str) -> list[dict[str, str]]:
    """The queue's view of the worker jobs: id, state, CPUs, memory, time limit, partition, comment."""
    out = subprocess.run(["squeue", "--noheader", "--name", job_name, "--format=%i|%T|%C|%m|%l|%P|%k"],
                         capture_output=True, text=True, check=True).stdout
    keys = ("id", "state", "cpus", "memory", "limit", "partition", "comment")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def live(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["state"] in ("PENDING", "RUNNING", "CONFIGURING")]


class QueueWatcher:
    """Samples ``squeue`` twice a second in a thread: (seconds, live worker jobs) over the run."""

    def __init__(self, job_name: str) -> None:
        self.job_name = job_name
        self.samples: list[tuple[float, list[dict[str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic() - self.t0, live(squeue(self.job_name))))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak(self) -> int:
        return max((len(rows) for _, rows in self.samples), default=0)

    def first_time(self, when: float, predicate: Any) -> float | None:
        """The first sample time at or after ``when`` whose rows satisfy ``predicate``."""
        return next((t for t, rows in self.samples if t >= when and predicate(rows)), None)


def extras(job_name: str, **more: Any) -> dict[str, Any]:
    return {"cluster": "slurm", "slurm_conn_id": "slurm_local", "cores": 1, "memory": "1GiB",
            "walltime": "00:10:00", "queue": "debug", "job_name": job_name, "worker_timeout": 90, **more}


def square_slowly(x: int) -> int:
    time.sleep(0.15)
    return x * x


def burst(client: Any) -> int:
    return sum(client.gather(client.map(square_slowly, range(200), pure=False)))


def test_a_burst_grows_the_worker_jobs_then_they_shrink_back(slurm_env: dict[str, str]) -> None:
    job_name = f"hpcai-dask-ad-{uuid.uuid4().hex[:6]}"
    tag = make_tag("dask_adaptive_it", "burst", f"manual__{uuid.uuid4().hex}")
    hook = DaskHook("dask_it", extras=extras(job_name, adaptive=ADAPTIVE), tag=tag)
    with QueueWatcher(job_name) as watch, hook.get_client() as client:
        at_start = live(squeue(job_name))
        started = time.monotonic() - watch.t0
        result = burst(client)
        burst_end = time.monotonic() - watch.t0
        during = watch.peak()
        # after the burst: back to the minimum within the configured wait (plus a scaling interval and
        # the controller's own bookkeeping)
        deadline = time.monotonic() + SCALE_DOWN_WAIT + 15
        while len(live(squeue(job_name))) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        shrunk_at = time.monotonic() - watch.t0
        after = live(squeue(job_name))
        scaling = hook.scaling_text()
    print(f"start {started:.1f}s, burst over at {burst_end:.1f}s, peak {during} jobs, back to {len(after)} at "
          f"{shrunk_at:.1f}s; samples {[(round(t, 1), len(r)) for t, r in watch.samples][::4]}")

    assert result == sum(x * x for x in range(200))
    assert len(at_start) == 1, "an adaptive cluster starts at its minimum"
    assert during >= 2, f"the burst should have grown the worker jobs beyond the minimum: {watch.samples}"
    assert during <= 3, "never more than the maximum"
    assert len(after) == 1 and after[0]["state"] == "RUNNING", after
    # the configured wait, plus one scaling interval, scancel and squeue's view catching up, our 0.5 s polls
    assert shrunk_at - burst_end <= SCALE_DOWN_WAIT + 6, "the idle worker jobs went within the configured wait"
    assert scaling is not None and "1 running" in scaling and "adaptive 1-3 jobs" in scaling
    # every worker job asked for the connection's resources and carried the task's tag
    seen = {r["id"]: r for _, rows in watch.samples for r in rows}
    assert len(seen) >= 2
    for row in seen.values():
        assert (row["cpus"], row["memory"], row["partition"]) == ("1", "1G", "debug"), row
        assert row["limit"] in ("10:00", "00:10:00"), row
        assert row["comment"] == f"hpcai-tag={tag}", row
    assert set(seen) <= set(hook.worker_job_ids)
    usage = hook.usage()
    assert usage is not None and usage["worker_jobs"] >= 2 and usage["peak_workers"] >= 2
    assert 0 < usage["worker_hours"] < usage["fixed_worker_hours"]
    left = live(squeue(job_name))
    assert left == [], "closing the cluster cancels the last worker job"

    fixed_name = f"hpcai-dask-fx-{uuid.uuid4().hex[:6]}"
    fixed = DaskHook("dask_it", extras=extras(fixed_name, jobs=3, wait_for_workers=3))
    with fixed.get_client() as client:
        assert burst(client) == result


@pytest.mark.slow
def test_manufacturing_case_study_sweeps_on_adaptive_slurm_workers(slurm_env: dict[str, str], airflow_home: str,
                                                                    tmp_path: Any) -> None:
    """The DAG as users run it (`airflow dags test`), its Dask connection adaptive on Slurm: the report
    says how many worker jobs ran and their worker-hours against a fixed cluster of the peak."""
    import glob
    import json
    from pathlib import Path


    job_name = f"hpcai-dask-cs-{uuid.uuid4().hex[:6]}"
    conf = {"buffers": [0, 2, 6], "staffing": [2, 3], "scenarios": ["no_shortage", "severe_shortage"],
            "scenario_probabilities": {"no_shortage": 0.5, "severe_shortage": 0.5}, "replications": 2,
            "horizon": 1500.0, "warmup": 100.0, "confirm_replications": 4}
    results = tmp_path / "results"
    log = _dags_test_on_adaptive_slurm("manufacturing_optimization", conf, job_name, airflow_home, tmp_path)
    [folder] = glob.glob(str(results / "manufacturing_optimization" / "*"))
    usage = json.loads(Path(folder, "dask_usage.json").read_text())
    assert usage["worker_jobs"] >= 1 and usage["tasks"] == 4, usage  # cut for the adaptive maximum (2 x 2)
    assert json.loads(Path(folder, "result.json").read_text())["dask_usage"] == usage
    html = Path(folder, "report.html").read_text()
    assert "Dask workers (worker-hours)" in html and f"{usage['worker_jobs']} Slurm worker job(s)" in html
    assert "adaptive 1-2 jobs" in log, "the task log shows the scaling"
    assert live(squeue(job_name)) == []


def _dags_test_on_adaptive_slurm(dag_id: str, conf: dict[str, Any], job_name: str, airflow_home: str,
                                 tmp_path: Any) -> str:
    """``airflow dags test DAG_ID -c CONF`` with dask_default on adaptive Slurm worker jobs (1-2 jobs named
    ``job_name``), results under ``tmp_path/results``; returns the log once the run succeeded."""
    import json
    import sys
    from pathlib import Path

    from tests.support import airflow_env

    conn = {"conn_type": "dask", "extra": extras(job_name, adaptive={**ADAPTIVE, "maximum": 2})}
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id,
                           "-c", json.dumps(conf)], capture_output=True, text=True, timeout=400,
                          env=airflow_env(airflow_home, HPCAI_RESULTS_DIR=str(tmp_path / "results"),
                                          AIRFLOW__HPCAI__LOCAL_WORK_DIR=str(tmp_path / "jobs"),
                                          AIRFLOW_CONN_DASK_DEFAULT=json.dumps(conn)))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "state=success" in log, log[-5000:]
    return log


@pytest.mark.slow
def test_seismic_ensemble_aggregates_on_adaptive_slurm_workers(slurm_env: dict[str, str], airflow_home: str,
                                                                tmp_path: Any) -> None:
    """The seismic DAG (`airflow dags test`), its hazard aggregation on adaptive Slurm worker jobs
    through the dask_default connection: hazard.json and the report name the worker jobs and hours."""
    import glob
    import json
    from pathlib import Path


    job_name = f"hpcai-dask-se-{uuid.uuid4().hex[:6]}"
    conf = {"sources": [0.5], "magnitudes": [5.0], "soils": ["rock", "basin"], "nx": 96, "nz": 48, "steps": 160,
            "sponge_cells": 10, "sigma_ln": 0.0}
    results = tmp_path / "results"
    log = _dags_test_on_adaptive_slurm("seismic_risk", conf, job_name, airflow_home, tmp_path)
    [folder] = glob.glob(str(results / "seismic_risk" / "*"))
    hazard = json.loads(Path(folder, "hazard.json").read_text())
    usage = hazard["dask_usage"]
    assert hazard["n_scenarios"] == 2 and usage["worker_jobs"] >= 1 and usage["worker_hours"] > 0, usage
    assert usage["fixed_worker_hours"] >= usage["worker_hours"]
    html = Path(folder, "report.html").read_text()
    assert "Dask workers (worker-hours)" in html and f"{usage['worker_jobs']} Slurm worker job(s)" in html
    assert "adaptive 1-2 jobs" in log, "the task log shows the scaling"
    assert live(squeue(job_name)) == []
