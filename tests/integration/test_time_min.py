"""``time_min`` (Slurm ``--time-min``, REST ``time_minimum``) on the real cluster.

What the advisor's ``estimate`` mode relies on (docs/advisor.md): the backfill scheduler starts a
job that has a ``time_min`` early, in a hole before a higher-priority job's reservation, with its
limit lowered, never below ``time_min``; the same request without ``time_min`` waits.

The scene, on the one node of the default partition (CPU counts scale with the node's, here 256):

* A (sbatch): half the node, limit 5 min; it runs.
* B (sbatch): too wide to start beside A, so it waits, and the backfill scheduler reserves the
  node for it at A's planned end.
* D (the provider): 3/8 of the node, limit 10 min, no ``time_min``. It fits beside A but not
  beside B: started now, with 10 min, it would still run at B's reservation, so it waits.
* C (the provider): D's request with ``time_min`` = 2 min, submitted after D (lower priority).

The backfill scheduler (every 5 s here: ``bf_interval=5`` in scripts/local-slurm) starts C while
A runs and B waits, with a limit between 2 and 10 min that ends before B's reservation; D keeps
its 10 min and is planned after B. Through the local CLI, slurmrestd and SSH.

Not asserted, because Slurm 22.05 and 24.11 do not do it (measured: docs/advisor.md, "--time-min
on a real cluster"): that the limit is raised "as high as possible" into the hole. Before 25.05.3
the backfill scheduler gives a job it starts exactly ``time_min`` (backfill.c sets
``comp_time_limit`` to it; 25.05.3's changelog: "Fix bug where the backfill scheduler changed the
specified --time of a job and incorrectly reset it to --time-min"), even with nothing to make room
for: a ``time_min`` job on an idle node gets ``time_min`` whenever the backfill cycle starts it
before the main scheduler does.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from datetime import datetime

import pytest

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.commands import parse_slurm_seconds
from airflow_provider_hpcai.spec import JobSpec

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
log = logging.getLogger(__name__)

TRANSPORTS = ["slurm_local", "slurm_rest", "slurm_ssh"]
#: A's and B's limit (minutes): B's reservation is about this far off when C is considered.
BLOCKER_MINUTES = 5
REQUEST_S, TIME_MIN_S = 600, 120


@pytest.fixture(params=TRANSPORTS)
def conn_id(request: pytest.FixtureRequest, slurm_env, ssh_env) -> str:
    return request.param


def _job(job_id: str) -> dict[str, str]:
    """Slurm's own record of a job (``scontrol show job``): state, limit, time_min, (planned) start."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                         check=True).stdout
    fields = {}
    for key in ("JobState", "TimeLimit", "TimeMin", "StartTime", "Reason"):
        found = re.search(rf"\b{key}=(\S+)", out)
        fields[key] = found.group(1) if found else ""
    return fields


def _start(record: dict[str, str]) -> datetime:
    assert record["StartTime"] not in {"", "Unknown", "None"}, f"no (planned) start time: {record}"
    return datetime.fromisoformat(record["StartTime"])


def _limit_s(record: dict[str, str]) -> float:
    seconds = parse_slurm_seconds(record["TimeLimit"])
    assert seconds is not None, record
    return seconds


def _node_cpus(partition: str) -> int:
    out = subprocess.run(["sinfo", "--noheader", "--Node", f"--partition={partition}", "--format=%N|%c"],
                         capture_output=True, text=True, check=True).stdout
    nodes = {line.split("|")[0]: int(line.split("|")[1]) for line in out.split()}
    if len(nodes) != 1:
        pytest.skip(f"the scene needs a partition of one node; {partition} has {sorted(nodes)}")
    return next(iter(nodes.values()))


def _sbatch(name: str, cpus: int, partition: str, workdir: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", f"--job-name={name}", f"--partition={partition}",
                          f"--cpus-per-task={cpus}", "--mem=64M", f"--time={BLOCKER_MINUTES}",
                          f"--chdir={workdir}", "--output=/dev/null", "--wrap=sleep 300"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split(";")[0]


def _until(check, timeout: float, what: str, ids: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            queue = subprocess.run(["squeue", "--format=%i %j %u %T %C %l %S %r"], capture_output=True,
                                   text=True).stdout
            pytest.fail(f"timed out ({timeout} s) waiting for {what}; our jobs {ids}; the queue:\n{queue}")
        time.sleep(0.5)


def test_backfill_starts_a_time_min_job_early_with_a_lowered_limit(conn_id: str, shared_workdir: str) -> None:
    partition = os.environ.get("HPCAI_SLURM_PARTITION", "debug")
    cpus = _node_cpus(partition)
    if cpus < 32:
        pytest.skip(f"the scene needs a node of 32 CPUs or more ({partition}'s has {cpus})")
    a_cpus, c_cpus = cpus // 2, cpus * 3 // 8
    b_cpus = cpus - c_cpus + cpus // 16  # does not fit beside C (nor beside A)
    request = Resources(cpus_per_task=c_cpus, memory="64M", time_limit=REQUEST_S, partition=partition)
    backend = SlurmBackend(conn_id)
    ids: list[str] = []
    try:
        a = _sbatch("it-time-min-a", a_cpus, partition, shared_workdir)
        ids.append(a)
        _until(lambda: _job(a)["JobState"] == "RUNNING", 30, "A to start", ids)
        b = _sbatch("it-time-min-b", b_cpus, partition, shared_workdir)
        ids.append(b)
        d = backend.submit(JobSpec(name="it-time-min-d", script="sleep 300", resources=request),
                           workdir=shared_workdir).job_id
        ids.append(d)
        c = backend.submit(JobSpec(name="it-time-min-c", script="sleep 300",
                                   resources=request.replace(time_min=TIME_MIN_S)), workdir=shared_workdir).job_id
        ids.append(c)
        _until(lambda: _job(c)["JobState"] == "RUNNING", 40, "the backfill scheduler to start C", ids)
        jobs = {name: _job(job_id) for name, job_id in zip("abdc", ids)}
        _until(lambda: _job(d)["StartTime"] not in {"", "Unknown", "None"}, 15, "D's planned start", ids)
        jobs["d"] = _job(d)
    finally:
        subprocess.run(["scancel", *ids], capture_output=True)

    assert (jobs["a"]["JobState"], jobs["b"]["JobState"]) == ("RUNNING", "PENDING"), jobs
    assert jobs["d"]["JobState"] == "PENDING", jobs  # D, ahead of C in the queue, did not fit
    # Slurm got the provider's time_min (sbatch --time-min / REST time_minimum): 2 min on C, none on D
    assert parse_slurm_seconds(jobs["c"]["TimeMin"]) == TIME_MIN_S, jobs["c"]
    assert jobs["d"]["TimeMin"] in {"N/A", ""}, jobs["d"]
    c_start, b_start, d_start = _start(jobs["c"]), _start(jobs["b"]), _start(jobs["d"])
    c_limit = _limit_s(jobs["c"])
    # C started early: before B, whose reservation it must not delay, so its limit was lowered,
    # no lower than time_min, to end by B's planned start
    assert c_start < b_start, jobs
    assert TIME_MIN_S <= c_limit < REQUEST_S, jobs["c"]
    assert (b_start - c_start).total_seconds() >= c_limit, jobs
    # the same request without time_min keeps its limit and waits for B
    assert _limit_s(jobs["d"]) == REQUEST_S and d_start >= b_start, jobs
    version = subprocess.run(["scontrol", "--version"], capture_output=True, text=True).stdout.strip()
    log.info("time_min, %s, %s: C started %.0f s before D's planned start and %.0f s before B's, with limit %.0f s "
             "(requested %d, time_min %d)", version, conn_id, (d_start - c_start).total_seconds(),
             (b_start - c_start).total_seconds(), c_limit, REQUEST_S, TIME_MIN_S)
