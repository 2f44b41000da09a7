"""A crashed Dask task's worker jobs do not outlive it: the retry cancels them by the task's tag.

The first try runs DaskOperator.execute in its own process (as an Airflow task's worker process
does) with an adaptive cluster of Slurm worker jobs; it is killed with SIGKILL mid-sweep, so
nothing of it can clean up. The second try (same dag, task and run: the same tag) must find and
cancel the first try's worker jobs still queued or running before it submits its own, finish
the sweep, and leave the queue empty. The task instance is a small stand-in (identity and XCom): what the operator reads
from Airflow's. About 45 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_dask_adaptive import extras, live, squeue

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

ROOT = Path(__file__).resolve().parents[2]
ADAPTIVE = {"minimum": 1, "maximum": 3, "target_duration": "2s", "interval": "1s", "scale_down_wait": "5s"}


class StandInTaskInstance:
    """What DaskOperator reads from the task instance: its identity, and XCom pushes."""

    def __init__(self, run_id: str, try_number: int) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = "dask_retry_it", "sweep", run_id, -1
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def slow_square(x: int) -> int:
    time.sleep(0.3)
    return x * x


def sweep(client: Any) -> int:
    return sum(client.gather(client.map(slow_square, range(150), pure=False)))


def run_try(job_name: str, run_id: str, try_number: int) -> None:
    """One try of the task, in this process (called by the test through ``python -c``)."""
    from airflow_provider_hpcai.hooks.dask import DaskHook
    from airflow_provider_hpcai.operators.dask import DaskOperator

    class SlurmSweep(DaskOperator):
        def make_hook(self) -> DaskHook:
            return DaskHook("dask_it", extras=extras(job_name), adaptive=self.adaptive, tag=self.task_tag)

    op = SlurmSweep(task_id="sweep", python_callable=sweep, adaptive=ADAPTIVE, progress_interval=1)
    ti = StandInTaskInstance(run_id, try_number)
    result = op.execute({"ti": ti})
    hook = op._hook
    assert hook is not None
    print("TRY-RESULT " + json.dumps({"result": result, "stale": hook.stale_job_ids, "tag": op.task_tag,
                                      "jobs": hook.worker_job_ids, "usage": ti.xcom.get("dask_usage")}), flush=True)


def _start_try(job_name: str, run_id: str, try_number: int, log: Path) -> subprocess.Popen[bytes]:
    code = ("from tests.integration.test_dask_adaptive_retry import run_try; "
            f"run_try({job_name!r}, {run_id!r}, {try_number})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_killed_try_leaves_no_worker_job_after_the_retry(slurm_env: dict[str, str], tmp_path: Path) -> None:
    job_name = f"hpcai-dask-rt-{uuid.uuid4().hex[:6]}"
    run_id = f"manual__{uuid.uuid4().hex}"
    first = _start_try(job_name, run_id, 1, tmp_path / "try1.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and first.poll() is None:
            if sum(r["state"] == "RUNNING" for r in live(squeue(job_name))) >= 2:
                break
            time.sleep(0.5)
        time.sleep(2)  # mid-sweep: the cluster has grown and futures are finishing
        log1 = (tmp_path / "try1.log").read_text(errors="replace")
        assert first.poll() is None, log1[-3000:]
        os.kill(first.pid, signal.SIGKILL)  # the worker process of the task dies: no clean-up runs
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    first_jobs = {r["id"] for r in live(squeue(job_name))}  # read after the kill: nothing submits any more
    assert len(first_jobs) >= 2 and "futures finished" in log1, (first_jobs, log1[-3000:])

    second = _start_try(job_name, run_id, 2, tmp_path / "try2.log")
    second.wait(timeout=180)
    log2 = (tmp_path / "try2.log").read_text(errors="replace")
    assert second.returncode == 0, log2[-4000:]
    report = json.loads(log2.split("TRY-RESULT ", 1)[1].splitlines()[0])
    print(f"first try's jobs {sorted(first_jobs)}; the retry cancelled {report['stale']} and ran {report['jobs']}")

    assert report["result"] == sum(x * x for x in range(150))
    # a worker whose scheduler died may also end by itself before the retry looks; every other one of the
    # first try's jobs must have been found by the task's tag and cancelled (and some always are: the
    # workers wait up to dask-jobqueue's 60 s death timeout for their scheduler)
    stale = set(report["stale"])
    assert stale and stale <= first_jobs, "the retry found the first try's worker jobs by the task's tag"
    assert "an earlier try of this task left in the queue" in log2
    assert not set(report["jobs"]) & first_jobs, "the retry ran worker jobs of its own"
    left = live(squeue(job_name))
    assert left == [], f"worker jobs left in the queue: {left}"
    deadline = time.monotonic() + 30  # accounting can lag a few seconds behind
    while True:
        out = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "-j", ",".join(sorted(first_jobs)),
                              "--format=JobID,State"], capture_output=True, text=True, check=True).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if line.strip())
        if all(states.get(j, "").startswith("CANCELLED") for j in stale) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(states.get(j, "").startswith("CANCELLED") for j in stale), states
    assert all(states.get(j, "RUNNING") not in ("RUNNING", "PENDING") for j in first_jobs), states
