"""Clearing a task that succeeded, in a real Airflow: reuse by default, and the documented way to run again.

A durable task (the default) adopts the job of an earlier try, so clearing a task whose job
already succeeded returns that job's result without a second job; the task log says how to run
it again. Deleting the task's state store through Airflow's REST API before clearing runs a new
job. Not disruptive: the cluster keeps running.
"""

from __future__ import annotations

import pytest

from tests.faults import checks
from tests.faults.cluster import TaskDef
from tests.faults.stack import AirflowStack

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slurm]

DAG_ID = "hpcai_fx_clear_rerun"
TASK = TaskDef("stage", "slurm_local", "sleep 2; echo stage-done")


def _clear(stack: AirflowStack, run_id: str) -> None:
    stack.api("POST", f"/dags/{DAG_ID}/clearTaskInstances",
              {"dry_run": False, "task_ids": [TASK.task_id], "dag_run_id": run_id, "only_failed": False,
               "reset_dag_runs": True})


def _wait_done(stack: AirflowStack, run_id: str, tries: int) -> dict:
    def done() -> bool:
        ti = stack.task_instances(DAG_ID, run_id)[TASK.task_id]
        return ti["state"] in ("success", "failed") and ti["try_number"] == tries

    stack.wait_until(f"try {tries} of the task to finish", done, timeout=240)
    checks.finished_task(stack, DAG_ID, run_id, TASK.task_id, tries=tries)
    return checks.result_in_xcom(stack, DAG_ID, run_id, TASK.task_id)


def test_clearing_a_succeeded_task_reuses_its_job_until_its_state_is_deleted(stack: AirflowStack, deploy) -> None:
    deploy(DAG_ID, [TASK])
    run_id = stack.trigger(DAG_ID)
    first = _wait_done(stack, run_id, tries=1)
    assert checks.one_job_per_try(DAG_ID, run_id, TASK.task_id, tries=1) == [first["job_id"]]

    _clear(stack, run_id)  # durable (default): the finished job's result comes back, no new job
    again = _wait_done(stack, run_id, tries=2)
    assert again["job_id"] == first["job_id"]
    checks.one_job_per_try(DAG_ID, run_id, TASK.task_id, tries=1)
    log = stack.task_log(DAG_ID, run_id, TASK.task_id, 2)
    route = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK.task_id}/state-store"
    assert "already succeeded" in log and f"DELETE {route}" in log, log[-3000:]

    # What the log says to do: delete the task's state, then clear. A new job runs.
    stack.api("DELETE", route.removeprefix("/api/v2"))
    _clear(stack, run_id)
    third = _wait_done(stack, run_id, tries=3)
    assert third["job_id"] != first["job_id"]
    jobs = checks.one_job_per_try(DAG_ID, run_id, TASK.task_id, tries=2)
    assert sorted(jobs) == sorted([first["job_id"], third["job_id"]])
