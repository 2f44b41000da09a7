"""What every fault case asserts: the task's end state, its result in XCom, one job per try."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from tests.faults import cluster
from tests.faults.stack import AirflowStack

#: Seconds a disruptive test waits for other users of the cluster to finish before skipping.
QUIET_WAIT = float(os.environ.get("HPCAI_FAULTS_QUIET_WAIT", "300"))
#: `make test` sets this (as tests/conftest.py reads it): a busy cluster is then a failure.
REQUIRE_SERVICES = os.environ.get("HPCAI_REQUIRE_SERVICES") == "1"


def finished_task(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, *, state: str = "success",
                  tries: int = 1) -> dict[str, Any]:
    """Check one task instance ended in ``state`` after ``tries`` tries; returns the task instance."""
    ti = stack.task_instances(dag_id, run_id)[task_id]
    log = stack.task_log(dag_id, run_id, task_id, ti["try_number"])
    assert ti["state"] == state, f"{task_id} is {ti['state']}, expected {state}; log tail:\n{log[-3000:]}"
    assert ti["try_number"] == tries, f"{task_id} took {ti['try_number']} tries, expected {tries}"
    return ti


def result_in_xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The task's returned job result: a completed job, with its id and accounting."""
    result = stack.xcom(dag_id, run_id, task_id)
    assert isinstance(result, dict), f"no result in XCom for {task_id}: {result!r}"
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0 and result["failure"] is None, result
    assert result["job_id"] and result["elapsed_seconds"] is not None, result
    return result


def retry_reattached(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, first_job: str
                     ) -> tuple[dict[str, Any], str]:
    """The task succeeded on its second try by reattaching to ``first_job``; returns its result and that try's log."""
    finished_task(stack, dag_id, run_id, task_id, tries=2)
    result = result_in_xcom(stack, dag_id, run_id, task_id)
    assert result["job_id"] == first_job, "the retry ran another job instead of reattaching"
    retry_log = stack.task_log(dag_id, run_id, task_id, 2)
    assert f"Reattaching to job {first_job}" in retry_log or f"Reattaching to live job {first_job}" in retry_log
    return result, retry_log


def one_job_per_try(dag_id: str, run_id: str, task_id: str, tries: int = 1, settle: float = 3) -> list[str]:
    """Exactly ``tries`` Slurm jobs carry the task instance's tag (accounting plus the live queue)."""
    tag = cluster.tag_of(dag_id, run_id=run_id, task_id=task_id)
    cluster.wait_sacct(tag, tries, timeout=60)
    time.sleep(settle)  # a duplicate submitted late would show up now
    jobs = cluster.jobs_for_tag(tag)
    assert len(jobs) == tries, f"{task_id}: {len(jobs)} Slurm jobs carry tag {tag} ({jobs}); expected {tries}"
    return jobs


_gave_up: list[str] = []


def claim_quiet_cluster() -> None:
    """Return once nobody else uses the cluster; skip (locally) or fail (make test) if that never happens.

    After one wait ran out, later cases of the session look once more (30 s) instead of
    waiting the whole ``HPCAI_FAULTS_QUIET_WAIT`` again.
    """
    reasons = cluster.wait_quiet(30 if _gave_up else QUIET_WAIT)
    if reasons:
        _gave_up.append(reasons[0])
        message = (f"the cluster is used by others (waited up to {QUIET_WAIT:.0f} s, HPCAI_FAULTS_QUIET_WAIT): "
                   + "; ".join(reasons[:5]))
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def restore_or_fail() -> None:
    done = cluster.restore_cluster()
    assert all("FAILED" not in step for step in done), f"cluster not restored: {done}"
