"""Heterogeneous jobs on the real clusters, through the local CLI, SSH and REST transports.

What a DAG author sees: a task with ``components=[...]`` submits ONE job whose groups reach Slurm
with the resources asked for; the provider reports one job (one status, one tag match, one
accounting record); a retry after a lost worker adopts it instead of submitting a second; cancel
removes every group.

Slurm starts the groups of a hetjob on distinct nodes only (backfill.c ``_het_job_start_now`` takes
the nodes earlier groups got out of the candidates): in the default partition (one node) a hetjob
stays PENDING (Resources) for ever, which the first test relies on. The tests in which the groups
*run* (each reports its node and CPUs; a group killed for its memory fails the task as
``JobOutOfMemory``; cancel stops both running groups) use the partition of two nodes that
``scripts/local-slurm`` sets up (``HPCAI_SLURM_HET_PARTITION``, the node ``<host>-het``) and skip
where there is none. Each waits for the backfill scheduler (the only one that starts hetjobs,
every 30 s by default; ``scripts/local-slurm`` sets 5 s).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.support import FakeStore, make_context

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
log = logging.getLogger(__name__)

TRANSPORTS = ["slurm_local", "slurm_rest", "slurm_ssh"]
#: Group 0 (where the script runs) and group 1: small enough to sit beside other tests' jobs.
GROUP0 = Resources(memory="64M", time_limit=120)
GROUP1 = Resources(cpus_per_task=2, memory="32M", time_limit=120)
#: What each group's step reports (24.11 gives steps SLURM_HET_SIZE and the *_HET_GROUP_<N> values, no
#: SLURM_HET_JOB_OFFSET): its group, the node it ran on and its own CPUs.
REPORT = ('echo "group=$1 size=$SLURM_HET_SIZE node=${SLURMD_NODENAME:-$(hostname)} '
          'cpus=$SLURM_JOB_CPUS_PER_NODE group1_id=$SLURM_JOB_ID_HET_GROUP_1"')


@pytest.fixture(params=TRANSPORTS)
def conn_id(request: pytest.FixtureRequest, slurm_env, ssh_env) -> str:
    return request.param


def _squeue(job_id: str) -> dict[str, tuple[str, str]]:
    """What squeue itself says: ``{"<id>+<group>": (state, cpus)}``."""
    out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%C", f"--jobs={job_id}"],
                         capture_output=True, text=True, check=True).stdout
    return {i: (state, cpus) for i, state, cpus in (line.split("|") for line in out.split())}


def _sacct(job_id: str) -> dict[str, str]:
    out = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                          f"--jobs={job_id}"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _nodes(partition: str) -> int:
    out = subprocess.run(["sinfo", "--noheader", "--Node", f"--partition={partition}", "--format=%N"],
                         capture_output=True, text=True).stdout
    return len(set(out.split()))


def _until(check, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _operator(conn_id: str, workdir: str, script: str, **kwargs) -> SlurmJobOperator:
    with DAG(dag_id="it_hetjob", schedule=None):
        return SlurmJobOperator(task_id="coupled", slurm_conn_id=conn_id, workdir=workdir, script=script,
                                job_resources=GROUP0, components=[GROUP1], poll_interval=1, **kwargs)


def test_hetjob_reaches_slurm_as_one_job_and_cancel_removes_every_group(conn_id: str, shared_workdir: str) -> None:
    op_script = f"srun --het-group=0 bash -c '{REPORT}' _ 0 & srun --het-group=1 bash -c '{REPORT}' _ 1 & wait"
    context = make_context(store=FakeStore())  # no state survives the first try: only the tag finds the job
    with pytest.raises(TaskDeferred) as first:
        _operator(conn_id, shared_workdir, op_script, deferrable=True).execute(context)
    job_id = context["ti"].xcom["job_id"]
    assert first.value.trigger.job_id == job_id
    backend = SlurmBackend(conn_id)
    tag = make_tag("it_hetjob", "coupled", context["run_id"])
    ref = backend._ref(job_id, shared_workdir, False, tag)
    try:
        groups = _squeue(job_id)
        assert set(groups) == {f"{job_id}+0", f"{job_id}+1"}, groups  # both groups, under the leader's id
        assert groups[f"{job_id}+0"][1] == "1" and groups[f"{job_id}+1"][1] == "2"  # each with its own CPUs
        # the provider sees one job: one status, one tag match
        statuses = backend.hook.get_statuses([job_id])
        assert list(statuses) == [job_id] and statuses[job_id].phase.name == "ACTIVE"
        assert [s.job_id for s in backend.hook.find_jobs_by_tag(tag)] == [job_id]
        # a retry after the worker was lost adopts that job: no second hetjob
        retry = make_context(run_id=context["run_id"], store=FakeStore(), try_number=2)
        with pytest.raises(TaskDeferred):
            _operator(conn_id, shared_workdir, op_script, deferrable=True).execute(retry)
        assert retry["ti"].xcom["job_id"] == job_id
    finally:
        backend.cancel(ref)
    _until(lambda: all(state == "CANCELLED" for state, _ in _squeue(job_id).values()), what="both groups cancelled")
    status = backend.wait(ref, poll_interval=1, log=log)
    assert status.state == "CANCELLED"
    _until(lambda: bool(_sacct(job_id)), what="accounting")
    # 22.05 records both groups (<id>+0, <id>+1), 24.11 one record for a hetjob that never started
    assert all(state.startswith("CANCELLED") for state in _sacct(job_id).values()), _sacct(job_id)
    record = backend.hook.get_conn().accounting([job_id])
    assert list(record) == [job_id] and record[job_id]["state"] == "CANCELLED"


def test_other_backends_refuse_a_hetjob_before_submission(tmp_path) -> None:
    from airflow_provider_hpcai.backends.local import LocalBackend

    spec = JobSpec(name="het-local", script="true", resources=GROUP0, components=[GROUP1])
    with pytest.raises(exc.InvalidJobSpecError, match="heterogeneous jobs need Slurm"):
        LocalBackend(base_dir=str(tmp_path)).submit(spec)


# ------------------------------------------------------------------ groups that run (two nodes or more)
@pytest.fixture()
def het_partition(slurm_env) -> str:
    """The partition of two nodes or more that the groups run in, or a skip saying why."""
    partition = os.environ.get("HPCAI_SLURM_HET_PARTITION")
    if not partition or _nodes(partition) < 2:
        pytest.skip("a hetjob's groups start on distinct nodes only (Slurm backfill.c _het_job_start_now) and this "
                    "cluster has no partition of two nodes (scripts/local-slurm up makes 'het')")
    return partition


def _running(partition: str) -> tuple[Resources, Resources]:
    return GROUP0.replace(partition=partition), GROUP1.replace(partition=partition)


def _finish(backend: SlurmBackend, ref, timeout: float = 180):
    """Wait for the job to end; a job still there after ``timeout`` is cancelled (a pending hetjob holds
    the partition's scheduling up for everybody) and the test fails."""
    deadline = time.monotonic() + timeout
    try:
        while (status := backend.status(ref)) is None or status.phase.name == "ACTIVE":
            assert time.monotonic() < deadline, f"hetjob {ref.job_id} did not end within {timeout} s: {status}"
            time.sleep(1)
    except BaseException:
        backend.cancel(ref)
        raise
    return status


def test_both_groups_run_and_report_themselves(conn_id: str, shared_workdir: str, het_partition: str) -> None:
    backend = SlurmBackend(conn_id)
    group0, group1 = _running(het_partition)
    spec = JobSpec(name="it-het", resources=group0, components=[group1],
                   script=f"srun --het-group=0 bash -c '{REPORT}' _ 0\nsrun --het-group=1 bash -c '{REPORT}' _ 1")
    ref = backend.submit(spec, workdir=shared_workdir)
    status = _finish(backend, ref)
    result = backend.result(ref, state=status.state, exit_code=status.exit_code, requested=group0.to_dict(),
                            offsets={"stdout": 0, "stderr": 0}, log=log)
    out = backend.hook.read_output(result["stdout_path"]).decode()
    lines = {line.split()[0]: dict(f.split("=", 1) for f in line.split()) for line in out.splitlines()
             if line.startswith("group=")}
    assert set(lines) == {"group=0", "group=1"}, out
    assert lines["group=0"]["cpus"] == "1" and lines["group=1"]["cpus"] == "2"  # each group its own CPUs
    assert lines["group=0"]["node"] != lines["group=1"]["node"]  # Slurm's distinct nodes
    assert lines["group=0"]["size"] == "2" and lines["group=1"]["group1_id"] == str(int(ref.job_id) + 1)
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0 and result["failure"] is None
    # accounting: one record, both groups' CPUs summed, each group's own figures listed
    assert result["job_id"] == ref.job_id and [c["het_group"] for c in result["het_components"]] == [0, 1]
    assert [c["alloc_cpus"] for c in result["het_components"]] == [1, 2]
    assert len({c["node_list"] for c in result["het_components"]}) == 2


@pytest.mark.timeout(300)
def test_a_group_killed_for_memory_fails_the_task_as_out_of_memory(conn_id: str, shared_workdir: str,
                                                                  het_partition: str) -> None:
    hog = "python3 -c 'import time; x = bytearray(400 * 1024 * 1024); time.sleep(15)'"
    group0, group1 = _running(het_partition)
    with DAG(dag_id="it_hetjob_oom", schedule=None):
        op = SlurmJobOperator(task_id="coupled", slurm_conn_id=conn_id, workdir=shared_workdir, poll_interval=1,
                              job_resources=group0, components=[group1], deferrable=False,
                              script=f"srun --het-group=0 sleep 2 & a=$!\nsrun --het-group=1 {hog} & b=$!\n"
                                     "wait $a && wait $b")
    context = make_context()
    with pytest.raises(exc.JobOutOfMemory):
        op.execute(context)
    # The retry grows the group that ran out (group 1, from its own peak), not group 0, and succeeds.
    with DAG(dag_id="it_hetjob_oom", schedule=None):
        retry = SlurmJobOperator(task_id="coupled", slurm_conn_id=conn_id, workdir=shared_workdir, poll_interval=1,
                                 job_resources=group0, components=[group1], deferrable=False, script=op.script)
    result = retry.execute(make_context(run_id=context["run_id"], store=context["task_state_store"], try_number=2))
    assert result["state"] == "COMPLETED" and retry.job_ref.job_id != op.job_ref.job_id
    asked = {c["het_group"]: c["requested_memory_bytes"] for c in result["het_components"]}
    assert asked[0] == group0.memory_bytes and asked[1] > 400 * 1024**2, asked


def test_cancel_stops_both_running_groups(slurm_env, shared_workdir: str, het_partition: str) -> None:
    backend = SlurmBackend("slurm_local")  # cancel itself goes through every transport in the first test
    group0, group1 = _running(het_partition)
    spec = JobSpec(name="it-het-cancel", resources=group0, components=[group1],
                   script="srun --het-group=0 sleep 100 & srun --het-group=1 sleep 100 & wait")
    ref = backend.submit(spec, workdir=shared_workdir)
    try:
        _until(lambda: [s for s, _ in _squeue(ref.job_id).values()] == ["RUNNING", "RUNNING"], timeout=90,
               what="both groups running")
    except AssertionError:
        backend.cancel(ref)
        raise
    assert backend.statuses([ref])[ref.job_id].state == "RUNNING"
    backend.cancel(ref)
    _until(lambda: all(s == "CANCELLED" for s, _ in _squeue(ref.job_id).values()), what="both groups cancelled")
    assert backend.wait(ref, poll_interval=1, log=log).state == "CANCELLED"
