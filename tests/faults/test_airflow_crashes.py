"""Airflow's own processes crash while Slurm jobs run: nothing is lost, nothing runs twice.

Not disruptive to the cluster (only this suite's Airflow processes are killed), so these
cases run even while others use the cluster.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults import checks, cluster
from tests.faults.cluster import TaskDef
from tests.faults.stack import AirflowStack, cmdline, descendants

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slurm, pytest.mark.ssh]


def _task_process(stack: AirflowStack, ti_id: str, timeout: float = 60) -> int:
    """The pid of the process running a task instance (title ``airflow worker -- <ti id>``)."""
    title = f"airflow worker -- {ti_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in stack.pids("scheduler"):
            if cmdline(pid) == title:
                return pid
        time.sleep(0.2)
    raise TimeoutError(f"no process titled {title!r} under the scheduler")


def test_worker_sigkilled_after_submission_retry_reattaches(stack: AirflowStack, deploy) -> None:
    """SIGKILL the task's process once its job is queued: the retry adopts that job (one in all)."""
    dag_id = deploy("hpcai_fx_worker_kill",
                    [TaskDef("job", script="sleep 20; echo finished-once", deferrable=False)], retries=1)
    run_id = stack.trigger(dag_id)
    tag = cluster.tag_of(dag_id, "job", run_id)
    first_job = cluster.wait_job(tag, states=("PENDING", "CONFIGURING", "RUNNING"), timeout=180)
    ti_id = stack.task_instances(dag_id, run_id)["job"]["id"]
    victim = _task_process(stack, ti_id)
    os.kill(victim, signal.SIGKILL)

    stack.wait_done(dag_id, run_id, timeout=300)
    result, retry_log = checks.retry_reattached(stack, dag_id, run_id, "job", first_job)
    assert "Submitted Slurm job" not in retry_log
    with open(result["stdout_path"], encoding="utf-8") as handle:
        assert handle.read().count("finished-once") == 1
    assert checks.one_job_per_try(dag_id, run_id, "job", tries=1) == [first_job]


def test_triggerer_killed_and_restarted_while_tasks_are_deferred(stack: AirflowStack, deploy) -> None:
    """SIGKILL the triggerer while three tasks (three transports) wait; a new one finishes them.

    The local job ends while no triggerer runs: the new triggerer must still see it end.
    """
    tasks = [TaskDef("local", "slurm_local", "sleep 8; echo local-done"),
             TaskDef("rest", "slurm_rest", "sleep 25; echo rest-done"),
             TaskDef("ssh", "slurm_ssh", "sleep 25; echo ssh-done")]
    dag_id = deploy("hpcai_fx_triggerer_restart", tasks)
    run_id = stack.trigger(dag_id)
    stack.wait_states(dag_id, run_id, {"deferred"}, timeout=240)
    for task in tasks:
        cluster.wait_job(cluster.tag_of(dag_id, task.task_id, run_id), states=("RUNNING",), timeout=240)
    old = stack.procs["triggerer"].pid
    stack.kill_component("triggerer", signal.SIGKILL)
    assert not [p for p in descendants(old) if os.path.exists(f"/proc/{p}")]
    time.sleep(12)  # the local job ends meanwhile; the old triggerer's heartbeat goes stale
    stack.start_component("triggerer")

    stack.wait_done(dag_id, run_id, timeout=300)
    for task in tasks:
        checks.finished_task(stack, dag_id, run_id, task.task_id)
        result = checks.result_in_xcom(stack, dag_id, run_id, task.task_id)
        assert checks.one_job_per_try(dag_id, run_id, task.task_id) == [result["job_id"]]
        with open(result["stdout_path"], encoding="utf-8") as handle:
            assert f"{task.task_id}-done" in handle.read()
