"""A dask-jobqueue SLURMCluster on the real local Slurm cluster, through DaskHook and DaskOperator.

Workers arrive as Slurm jobs; afterwards no job of the cluster may be left in squeue, and
accounting must show that they ran. Each test takes about 5-15 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest

from airflow_provider_hpcai.hooks.dask import DaskHook

pytestmark = [pytest.mark.integration, pytest.mark.slurm]


def _squeue(job_name: str) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "--noheader", "--name", job_name, "--format=%i %T"], capture_output=True,
                         text=True, check=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]  # type: ignore[misc]


def _gone_from_squeue(job_name: str, within: float = 30) -> list[tuple[str, str]]:
    deadline = time.monotonic() + within
    left = _squeue(job_name)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _squeue(job_name)
    return left


def _sacct_states(job_ids: list[str], within: float = 30) -> dict[str, str]:
    """Final states of the jobs' own lines (accounting can lag a few seconds behind)."""
    deadline = time.monotonic() + within
    while True:
        out = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "-j", ",".join(job_ids),
                              "--format=JobID,State"], capture_output=True, text=True, check=True).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if line.strip())
        if set(states) == set(job_ids) and not any(s in {"RUNNING", "PENDING"} for s in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(1)


def _extras(job_name: str, **more: Any) -> dict[str, Any]:
    return {"cluster": "slurm", "slurm_conn_id": "slurm_local", "jobs": 2, "cores": 1, "memory": "1GiB",
            "walltime": "00:10:00", "queue": "debug", "job_name": job_name, "wait_for_workers": 2,
            "worker_timeout": 60, **more}


def _partial_sums(batch: range) -> int:
    return sum(x * x for x in batch)


def test_map_reduce_on_slurm_workers_leaves_no_job_behind(slurm_env: dict[str, str]) -> None:
    job_name = f"hpcai-dask-it-{uuid.uuid4().hex[:6]}"
    hook = DaskHook("dask_it", extras=_extras(job_name))
    started = time.monotonic()
    with hook.get_client() as client:
        ready_after = time.monotonic() - started
        running = _squeue(job_name)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        # batched work: 8 tasks of 10k numbers each, not 80k tiny tasks
        batches = [range(i, i + 10_000) for i in range(0, 80_000, 10_000)]
        total = client.submit(sum, client.map(_partial_sums, batches)).result()
        hosts = set(client.run(lambda: __import__("os").environ.get("SLURM_JOB_ID")).values())
    closed_after = time.monotonic() - started
    print(f"workers ready after {ready_after:.1f}s, closed after {closed_after:.1f}s")

    assert total == sum(x * x for x in range(80_000))
    assert len(workers) == 2
    assert sorted(state for _, state in running) == ["RUNNING", "RUNNING"]
    job_ids = sorted(job_id for job_id, _ in running)
    assert hosts == set(job_ids), "each worker runs inside its own Slurm job"
    assert sorted(hook.worker_job_ids) == job_ids
    assert hook.closed_cleanly is True
    assert hook.log_directory and not os.path.exists(hook.log_directory), "worker logs of a clean run are removed"
    assert _gone_from_squeue(job_name) == []
    states = _sacct_states(job_ids)
    assert set(states) == set(job_ids) and all(s.split()[0] in {"COMPLETED", "CANCELLED"} for s in states.values())
    assert closed_after < 90


def test_an_exception_in_the_block_still_cancels_the_worker_jobs(slurm_env: dict[str, str]) -> None:
    job_name = f"hpcai-dask-it-{uuid.uuid4().hex[:6]}"
    hook = DaskHook("dask_it", extras=_extras(job_name, wait_for_workers=1))
    with pytest.raises(RuntimeError, match="analysis failed"), hook.get_client():
        assert len(_squeue(job_name)) == 2
        raise RuntimeError("analysis failed")
    assert _gone_from_squeue(job_name) == []
    assert len(hook.worker_job_ids) == 2 and hook.closed_cleanly is True
    assert hook.log_directory and os.path.isdir(hook.log_directory), "worker logs are kept after a failure"
    shutil.rmtree(hook.log_directory)


def test_operator_on_kill_cancels_the_worker_jobs(slurm_env: dict[str, str]) -> None:
    import threading

    from airflow_provider_hpcai.operators.dask import DaskOperator

    job_name = f"hpcai-dask-it-{uuid.uuid4().hex[:6]}"

    class SlurmDaskOperator(DaskOperator):
        def make_hook(self) -> DaskHook:
            return DaskHook("dask_it", extras=_extras(job_name, jobs=1, wait_for_workers=1))

    op = SlurmDaskOperator(task_id="long", python_callable=lambda client: client.submit(time.sleep, 300).result())
    ended: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({})
        except BaseException as err:  # whatever ended it, the task did not complete
            ended.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while [state for _, state in _squeue(job_name)] != ["RUNNING"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [state for _, state in _squeue(job_name)] == ["RUNNING"]
    time.sleep(3)  # the worker joins and the sleep task starts
    op.on_kill()
    thread.join(timeout=60)
    assert not thread.is_alive() and ended
    assert _gone_from_squeue(job_name) == []
