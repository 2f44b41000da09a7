"""DaskOperator in real Airflow task processes: a scheduler with the LocalExecutor on SQLite.

``airflow dags test`` runs tasks in its own process, without what a real task runner does; these
tests run the DAGs as a deployment does (api-server, scheduler, dag-processor; tests/faults/stack.py),
the task in the process the task runner forks, its database access blocked.

- The default local cluster starts its workers as processes; they must start inside such a task
  (they re-run the ``airflow`` command, which set up the blocked database; dask/spawn.py).
- A task whose adaptive Slurm worker jobs are running mid-sweep is killed with SIGKILL (its task
  process: nothing of it can clean up); its retry cancels them by the task's tag, finishes the
  sweep, and leaves no worker job of the first try in the queue.

About 2 minutes on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.faults.stack import AirflowStack, cmdline
from tests.integration.test_dask_adaptive import extras, live, squeue
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

JOB_NAME = f"hpcai-dask-af-{uuid.uuid4().hex[:6]}"
ADAPTIVE = {"minimum": 1, "maximum": 3, "target_duration": "2s", "interval": "1s", "scale_down_wait": "5s"}
SWEEP = 150

LOCAL_DAG = '''
from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG

from airflow_provider_hpcai.operators.dask import DaskOperator


def square(x):
    return x * x


def total(client):
    pids = client.run(os.getpid)
    return {"total": sum(client.gather(client.map(square, range(40)))), "task_pid": os.getpid(),
            "worker_pids": sorted(pids.values())}


with DAG("hpcai_dask_local_processes", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
    DaskOperator(task_id="total", python_callable=total, progress_interval=2)
'''

RETRY_DAG = f'''
from __future__ import annotations

import datetime
import time

from airflow.sdk import DAG

from airflow_provider_hpcai.operators.dask import DaskOperator


def slow_square(x):
    time.sleep(0.3)
    return x * x


def sweep(client):
    return sum(client.gather(client.map(slow_square, range({SWEEP}), pure=False)))


with DAG("hpcai_dask_retry", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False,
         default_args={{"retries": 1, "retry_delay": datetime.timedelta(seconds=1)}}):
    DaskOperator(task_id="sweep", python_callable=sweep, dask_conn_id="dask_rt", adaptive={ADAPTIVE!r},
                 progress_interval=1)
'''


@pytest.fixture(scope="module")
def stack(slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """api-server, scheduler (LocalExecutor) and dag-processor; no ``dask_default`` connection."""
    root = tmp_path_factory.mktemp("airflow-dask")
    env = {**slurm_env, "AIRFLOW_CONN_DASK_RT": json.dumps({"conn_type": "dask", "extra": extras(JOB_NAME)})}
    airflow = AirflowStack(root / "home", root / "dags", env)
    airflow.env.pop("AIRFLOW_CONN_DASK_DEFAULT", None)  # the default local cluster, whatever this shell says
    (airflow.dags / "hpcai_dask_local_processes.py").write_text(textwrap.dedent(LOCAL_DAG))
    (airflow.dags / "hpcai_dask_retry.py").write_text(textwrap.dedent(RETRY_DAG))
    airflow.migrate()
    try:
        airflow.start(("api-server", "scheduler", "dag-processor"))
        yield airflow
    finally:
        airflow.stop()


def _task_process(stack: AirflowStack, ti_id: str, timeout: float = 60) -> int:
    """The task runner's process of a task instance (it titles itself ``airflow worker -- <ti id>``)."""
    title = f"airflow worker -- {ti_id}"
    return wait_until(lambda: next((p for p in stack.pids("scheduler") if cmdline(p) == title), None), timeout,
                      f"a process titled {title!r} under the scheduler", interval=0.2)


def test_process_based_local_cluster_runs_in_a_real_task(stack: AirflowStack) -> None:
    """Without a connection the task starts a local cluster of worker processes, in the task runner's process."""
    dag_id = "hpcai_dask_local_processes"
    stack.wait_dag(dag_id)
    run_id = stack.trigger(dag_id)
    tis = stack.wait_done(dag_id, run_id, timeout=240)
    log = stack.task_log(dag_id, run_id, "total", 1)
    assert tis["total"]["state"] == "success", log[-6000:]
    result = stack.xcom(dag_id, run_id, "total")
    assert result["total"] == sum(x * x for x in range(40))
    assert len(result["worker_pids"]) == 2 and result["task_pid"] not in result["worker_pids"], result
    assert "Nanny failed" not in log and "airflow-db-not-allowed" not in log
    assert "Dask local cluster ready" in log and "dask usage: 2 worker(s)" in log


def test_a_killed_task_process_leaves_no_worker_job_after_its_retry(stack: AirflowStack) -> None:
    """SIGKILL the task mid-sweep on adaptive Slurm worker jobs; the retry cancels the first try's by tag."""
    from airflow_provider_hpcai.dask.jobqueue import active_jobs_with_tag
    from airflow_provider_hpcai.hooks.slurm import SlurmHook
    from airflow_provider_hpcai.spec import make_tag

    dag_id = "hpcai_dask_retry"
    stack.wait_dag(dag_id)
    run_id = stack.trigger(dag_id)
    tag = make_tag(dag_id, "sweep", run_id, -1)
    wait_until(lambda: sum(r["state"] == "RUNNING" for r in live(squeue(JOB_NAME))) >= 2, 180,
               "two running worker jobs of the first try")
    ti_id = stack.task_instances(dag_id, run_id)["sweep"]["id"]
    victim = _task_process(stack, ti_id)
    wait_until(lambda: re.search(r"dask: [1-9]\d*/\d+ futures finished", stack.task_log(dag_id, run_id, "sweep", 1)),
               60, "the first try's progress line with finished futures")
    os.kill(victim, signal.SIGKILL)  # the task's own process: no on_kill, no finally, no cluster.close
    first_jobs = wait_until(lambda: {r["id"] for r in live(squeue(JOB_NAME))}, 10, "the first try's jobs")
    assert all(tag in r["comment"] for r in live(squeue(JOB_NAME))), "worker jobs carry the task's tag"

    tis = stack.wait_done(dag_id, run_id, timeout=300)
    log1, log2 = (stack.task_log(dag_id, run_id, "sweep", n) for n in (1, 2))
    assert tis["sweep"]["state"] == "success" and tis["sweep"]["try_number"] == 2, (tis, log2[-6000:])
    assert stack.xcom(dag_id, run_id, "sweep") == sum(x * x for x in range(SWEEP))
    assert "Closed the Dask cluster" not in log1, "the first try was killed before it could clean up"

    found = re.search(r"Cancelled (\d+) Dask worker job\(s\) an earlier try of this task left in the queue"
                      r" \(tag (hpcai-[0-9a-f]+)\): ([^\"]+)", log2)
    assert found and found.group(2) == tag, log2[-6000:]
    stale = set(re.findall(r"(\d+) \(", found.group(3)))
    # a worker whose scheduler died may end by itself before the retry looks (dask-jobqueue's death
    # timeout); every other one of the first try's jobs must have been found by the tag and cancelled
    assert stale and stale <= first_jobs, (stale, first_jobs)

    assert live(squeue(JOB_NAME)) == [], "a worker job is left in the queue"
    assert active_jobs_with_tag(SlurmHook("slurm_local"), tag) == []
    states = _sacct_states(first_jobs)
    if states is None:  # accounting down (another test's outage): squeue above already holds the claim
        print("sacct did not answer: skipped the accounting check of", sorted(first_jobs))
        return
    assert all(states.get(j, "") not in ("RUNNING", "PENDING") for j in first_jobs), states
    deadline = time.monotonic() + 30  # accounting can lag a few seconds behind the cancel
    while not all(states.get(j, "").startswith("CANCELLED") for j in stale) and time.monotonic() < deadline:
        time.sleep(1)
        states = _sacct_states(first_jobs) or states
    assert all(states.get(j, "").startswith("CANCELLED") for j in stale), states


def _sacct_states(jobs: set[str]) -> dict[str, str] | None:
    """``{job id: state}`` from accounting, or ``None`` when slurmdbd does not answer."""
    proc = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "-j", ",".join(sorted(jobs)),
                           "--format=JobID,State"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return dict(line.split("|", 1) for line in proc.stdout.splitlines() if line.strip())
