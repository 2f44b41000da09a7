"""A containerised job through a worker crash: the retry reattaches to the job running in the
image, which runs once (not disruptive to the cluster: only this suite's worker is killed)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.faults import checks, cluster
from tests.faults.cluster import TaskDef
from tests.faults.stack import AirflowStack
from tests.faults.test_airflow_crashes import _task_process

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slurm, pytest.mark.ssh]

def test_worker_killed_while_a_containerised_job_runs_retry_reattaches(stack: AirflowStack, deploy,
                                                                       stage_image: Path) -> None:
    script = "cat /etc/hpcai-image; sleep 20; echo finished-once-in-the-image"
    task = TaskDef("job", script=script, deferrable=False, memory="128M", container=str(stage_image / "bundle"))
    dag_id = deploy("hpcai_fx_container_worker_kill", [task], retries=1)
    run_id = stack.trigger(dag_id)
    tag = cluster.tag_of(dag_id, "job", run_id)
    first_job = cluster.wait_job(tag, states=("RUNNING",), timeout=180)
    os.kill(_task_process(stack, stack.task_instances(dag_id, run_id)["job"]["id"]), signal.SIGKILL)

    stack.wait_done(dag_id, run_id, timeout=300)
    result, _ = checks.retry_reattached(stack, dag_id, run_id, "job", first_job)
    out = Path(result["stdout_path"]).read_text()  # the job ran in the image, once
    assert "HPCAI_IMAGE_NAME=hpcai-stage" in out and out.count("finished-once-in-the-image") == 1
