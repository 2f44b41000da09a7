"""A node is set DOWN under a running job: a classified node failure, and a retry that avoids it.

The local cluster has one node, so the retry's job (which excludes it) cannot run anywhere:
the test checks that the exclusion is really in the submitted job and that the provider
says why. Slurm 22.05 then ends that job FAILED at once (observed); should it pend instead,
marking the task failed must cancel it.
Disruptive (every job on the node dies): waits until nobody else uses the cluster.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.faults import checks, cluster
from tests.faults.cluster import TaskDef
from tests.faults.stack import AirflowStack

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slurm]


def test_node_down_is_a_node_failure_and_the_retry_excludes_the_node(stack: AirflowStack, deploy,
                                                                     quiet_cluster) -> None:
    dag_id = deploy("hpcai_fx_node_down", [TaskDef("job", "slurm_local", "sleep 120; echo too-late")], retries=1)
    run_id = stack.trigger(dag_id)
    tag = cluster.tag_of(dag_id, "job", run_id)
    first = cluster.wait_job(tag, states=("RUNNING",), timeout=240)
    stack.wait_states(dag_id, run_id, {"deferred"}, timeout=120)
    node = cluster.node_name()
    cluster.set_node("down", reason="hpcai fault test: node failure")

    def retry_job() -> str | None:
        live = [j for j in cluster.jobs_for_tag(tag) if j != first]
        return live[0] if live else None

    second = stack.wait_until("the retry's job", retry_job, timeout=180, every=1)
    first_log = stack.task_log(dag_id, run_id, "job", 1)
    # JobNodeFailure: the neutral name of the class that SlurmNodeFailure still names.
    assert "JobNodeFailure" in first_log and "NODE_FAIL" in first_log, first_log[-3000:]
    assert first in cluster.wait_sacct(tag, 1)
    assert cluster.job_field(second, "ExcNodeList") == node
    retry_log = stack.task_log(dag_id, run_id, "job", 2)
    assert f"The previous try hit a node failure on {node}: excluding it" in retry_log, retry_log[-3000:]
    assert cluster.job_field(first, "Restarts") in (None, "0"), "Slurm requeued the failed job itself"

    cluster.set_node("resume")
    time.sleep(5)
    # It may not use the only node there is: it pends, or Slurm ends it at once as unrunnable.
    state = cluster.job_field(second, "JobState")
    assert state in ("PENDING", "FAILED"), state
    if state == "PENDING":  # marking the task failed cancels its job (the trigger's on_kill)
        stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job", {"new_state": "failed"})
        stack.wait_until("the retry's job to be cancelled",
                         lambda: cluster.job_field(second, "JobState") in (None, "CANCELLED"), timeout=60, every=1)
    stack.wait_done(dag_id, run_id, timeout=120)
    checks.finished_task(stack, dag_id, run_id, "job", state="failed", tries=2)
    elapsed = subprocess.run(["sacct", "-j", second, "-X", "-n", "-P", "--format=Elapsed"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert elapsed == ["00:00:00"], f"the retry's job ran on the excluded node: {elapsed}"
    assert checks.one_job_per_try(dag_id, run_id, "job", tries=2) == sorted([first, second], key=int)
