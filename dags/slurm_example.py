"""Example: batch jobs on Slurm from Airflow, deferred, batched, classified.

Runs against the connection named by ``HPCAI_EXAMPLE_SLURM_CONN`` (default ``slurm_default``;
without such a connection, the Slurm CLI on this host). Shows:

* a plain batch job whose result (accounting) goes to XCom;
* an MPI job with 2 ranks (``mpiexec`` from the mpich wheel, inside the allocation);
* the same script mapped over three resource requests with ``partial(...).expand(...)``;
* a sensor waiting on a job id another task produced.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.sensors.slurm import SlurmJobSensor

CONN = os.environ.get("HPCAI_EXAMPLE_SLURM_CONN", "slurm_default")
PYTHON = os.environ.get("HPCAI_EXAMPLE_PYTHON", sys.executable)
WORKDIR = os.environ.get("HPCAI_EXAMPLE_WORKDIR") or None


@dag(
    dag_id="hpcai_slurm_example",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hpcai", "slurm", "example"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=5)},
)
def hpcai_slurm_example():
    hello = SlurmJobOperator(
        task_id="hello",
        slurm_conn_id=CONN,
        workdir=WORKDIR,
        script='echo "hello from $(hostname), run {{ run_id }}"; echo "GREETING=$GREETING"',
        environment={"GREETING": "it's $(not) `executed`"},
        job_resources=Resources(ntasks=1, memory="100M", time_limit="00:05:00"),
        poll_interval=2,
    )

    mpi = SlurmJobOperator(
        task_id="mpi_hello",
        slurm_conn_id=CONN,
        workdir=WORKDIR,
        script=(
            'MPIEXEC="$(dirname "$PYTHON")/mpiexec"\n'
            '"$MPIEXEC" -n "$SLURM_NTASKS" "$PYTHON" -m mpi4py -c '
            '"from mpi4py import MPI; c = MPI.COMM_WORLD; ranks = c.gather(c.rank); '
            'c.rank == 0 and print(*(f\'rank {i} of {c.size}\' for i in ranks), sep=chr(10))"'
        ),
        environment={"PYTHON": PYTHON},
        job_resources=Resources(ntasks=2, memory="400M", time_limit="00:05:00"),
        poll_interval=2,
    )

    sizes = SlurmJobOperator.partial(
        task_id="sized",
        slurm_conn_id=CONN,
        workdir=WORKDIR,
        script="echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_NODE",
        poll_interval=2,
    ).expand(job_resources=[
        {"cpus_per_task": 1, "memory": "64M", "time_limit": 120},
        {"cpus_per_task": 2, "memory": "128M", "time_limit": 120},
    ])

    watch = SlurmJobSensor(
        task_id="watch_hello",
        slurm_conn_id=CONN,
        job_id="{{ ti.xcom_pull(task_ids='hello')['job_id'] }}",
        poke_interval=2,
    )

    @task
    def report(hello_result: dict, mpi_result: dict) -> str:
        line = (f"hello: job {hello_result['job_id']} {hello_result['state']} in {hello_result['elapsed_seconds']} s; "
                f"mpi: job {mpi_result['job_id']} {mpi_result['state']} on {mpi_result['node_list']}")
        print(line)
        return line

    hello >> watch
    report(hello.output, mpi.output)
    hello >> sizes


hpcai_slurm_example()
