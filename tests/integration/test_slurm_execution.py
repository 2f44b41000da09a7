"""The Slurm execution core against the real local cluster, through every transport.

Each test submits real jobs (tiny ones) and checks what a DAG author would see: the result
dict, the exception class and its message, the job's output, and sacct's record.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
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


@pytest.fixture(params=TRANSPORTS)
def conn_id(request: pytest.FixtureRequest, slurm_env, ssh_env) -> str:
    return request.param


def _run(backend: SlurmBackend, spec: JobSpec, workdir: str) -> dict:
    ref = backend.submit(spec, workdir=workdir)
    status = backend.wait(ref, poll_interval=1, log=log)
    return backend.result(ref, state=status.state, exit_code=status.exit_code,
                          requested=spec.resources.to_dict(), offsets={"stdout": 0, "stderr": 0}, log=log)


def _sacct_tag_count(tag: str) -> int:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "--starttime=now-1hour", "--format=JobID,Comment"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.endswith(tag))


def test_success_and_output(conn_id: str, shared_workdir: str) -> None:
    backend = SlurmBackend(conn_id)
    hostile = "a'b\"c $(touch /tmp/hpcai-pwned) `id` \n#SBATCH --mem=1"
    spec = JobSpec(name="it-ok", script='echo "value=[$VALUE]"; echo to-stderr >&2',
                   resources=Resources(memory="64M", time_limit=120), environment={"VALUE": hostile},
                   tag=make_tag("it", "ok", conn_id + str(time.time())))
    result = _run(backend, spec, shared_workdir)
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0 and result["failure"] is None
    assert result["node_list"] and result["elapsed_seconds"] is not None
    out = backend.hook.read_output(result["stdout_path"]).decode()
    assert f"value=[{hostile}]" in out  # passed through verbatim, never executed
    assert not os.path.exists("/tmp/hpcai-pwned")
    assert b"to-stderr" in backend.hook.read_output(result["stderr_path"])


def test_nonzero_exit_is_a_classified_failure(conn_id: str, shared_workdir: str) -> None:
    backend = SlurmBackend(conn_id)
    spec = JobSpec(name="it-exit3", script="echo about to fail >&2; exit 3",
                   resources=Resources(memory="64M", time_limit=120))
    result = _run(backend, spec, shared_workdir)
    assert result["state"] == "FAILED" and result["exit_code"] == 3 and result["failure"] == "failed"


def test_memory_kill_is_out_of_memory(conn_id: str, shared_workdir: str) -> None:
    backend = SlurmBackend(conn_id)
    hog = "python3 -c 'import time; x = bytearray(400 * 1024 * 1024); time.sleep(15)'"
    spec = JobSpec(name="it-oom", script=hog, resources=Resources(memory="50M", time_limit=120))
    result = _run(backend, spec, shared_workdir)
    assert result["failure"] == "oom", result
    # One meaning on every transport and Slurm version: 128 + the signal that ended the job.
    assert (result["exit_code"], result["signal"]) == (137, 9), result


def test_cancel_while_running(conn_id: str, shared_workdir: str) -> None:
    backend = SlurmBackend(conn_id)
    spec = JobSpec(name="it-cancel", script="sleep 120", resources=Resources(memory="32M", time_limit=300))
    ref = backend.submit(spec, workdir=shared_workdir)
    deadline = time.time() + 30
    while (status := backend.status(ref)) is None or status.state == "PENDING":
        assert time.time() < deadline
        time.sleep(0.5)
    backend.cancel(ref)
    status = backend.wait(ref, poll_interval=1, log=log)
    assert status.state == "CANCELLED"


def test_timeout_is_classified_on_cli_and_rest_accounting(slurm_env, shared_workdir: str) -> None:
    """Slurm limits are whole minutes: a 1-minute job sleeping longer is killed within ~90 s."""
    backend = SlurmBackend("slurm_local")
    spec = JobSpec(name="it-timeout", script="sleep 300", resources=Resources(memory="32M", time_limit=60))
    result = _run(backend, spec, shared_workdir)
    assert result["state"] == "TIMEOUT" and result["failure"] == "timeout"
    assert (result["exit_code"], result["signal"]) == (143, 15), result  # the batch step's SIGTERM
    rest = SlurmBackend("slurm_rest").hook.get_accounting(result["job_id"])
    assert (rest["state"], rest["exit_code"], rest["signal"]) == ("TIMEOUT", 143, 15)


def test_mpi_job_with_two_ranks(slurm_env, shared_workdir: str) -> None:
    python = sys.executable
    mpiexec = os.path.join(os.path.dirname(python), "mpiexec")
    # Rank 0 prints for all ranks: concurrent prints from two ranks may interleave in one file.
    script = (f"{mpiexec} -n $SLURM_NTASKS {python} -m mpi4py -c "
              "\"from mpi4py import MPI; c = MPI.COMM_WORLD; r = c.gather(c.rank); "
              "c.rank == 0 and print('\\n'.join(f'rank {i} of {c.size}' for i in r))\"")
    backend = SlurmBackend("slurm_local")
    result = _run(backend, JobSpec(name="it-mpi", script=script,
                                   resources=Resources(ntasks=2, memory="400M", time_limit=120)), shared_workdir)
    assert result["state"] == "COMPLETED", result
    out = backend.hook.read_output(result["stdout_path"]).decode()
    assert "rank 0 of 2" in out and "rank 1 of 2" in out


# --------------------------------------------------------------------------- operator level
def _operator(conn_id: str, workdir: str, script: str, **kwargs) -> SlurmJobOperator:
    with DAG(dag_id="it_slurm_operator", schedule=None):
        return SlurmJobOperator(task_id="job", slurm_conn_id=conn_id, workdir=workdir, script=script,
                                job_resources=Resources(memory="64M", time_limit=300), poll_interval=1, **kwargs)


def test_deferred_task_reattaches_instead_of_resubmitting(conn_id: str, shared_workdir: str) -> None:
    """A try that submitted and then vanished (worker lost) is followed by one that adopts its job."""
    op = _operator(conn_id, shared_workdir, "sleep 5; echo done", deferrable=True)
    context = make_context(store=FakeStore())  # no state survives: only the tag can find the job
    with pytest.raises(TaskDeferred) as first:
        op.execute(context)
    job_id = context["ti"].xcom["job_id"]
    retry = make_context(run_id=context["run_id"], store=FakeStore(), try_number=2)
    with pytest.raises(TaskDeferred) as second:
        _operator(conn_id, shared_workdir, "sleep 5; echo done", deferrable=True).execute(retry)
    assert retry["ti"].xcom["job_id"] == job_id
    tag = make_tag("it_slurm_operator", "job", context["run_id"])
    assert first.value.trigger.job_id == second.value.trigger.job_id == job_id
    SlurmBackend(conn_id).wait(SlurmBackend(conn_id)._ref(job_id, shared_workdir, False, tag), poll_interval=1,
                               log=log)
    time.sleep(3)  # accounting lags the controller a little
    assert _sacct_tag_count(tag) == 1


def test_worker_killed_after_submission_retry_reattaches(slurm_env, shared_workdir: str, tmp_path) -> None:
    """SIGKILL a real worker process right after sbatch; the retry finishes the same job, no duplicate."""
    run_id = f"kill__{time.time_ns()}"
    child = tmp_path / "worker.py"
    child.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from tests.support import make_context
        from tests.integration.test_slurm_execution import _operator
        op = _operator("slurm_local", {shared_workdir!r}, "sleep 8; echo finished-once", deferrable=False)
        op.execute(make_context(run_id={run_id!r}))
    """))
    proc = subprocess.Popen([sys.executable, str(child)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tag = make_tag("it_slurm_operator", "job", run_id)
    backend = SlurmBackend("slurm_local")
    deadline = time.time() + 60
    while backend.find_live(tag) is None:
        assert time.time() < deadline and proc.poll() is None, "the worker never submitted"
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    retry = make_context(run_id=run_id, try_number=2)
    result = _operator("slurm_local", shared_workdir, "sleep 8; echo finished-once", deferrable=False).execute(retry)
    assert result["state"] == "COMPLETED"
    assert b"finished-once" in backend.hook.read_output(result["stdout_path"])
    time.sleep(3)
    assert _sacct_tag_count(tag) == 1


def test_operator_raises_out_of_memory_with_details(slurm_env, shared_workdir: str) -> None:
    hog = "python3 -c 'import time; x = bytearray(400 * 1024 * 1024); time.sleep(15)'"
    op = _operator("slurm_local", shared_workdir, hog, deferrable=False, escalate_on_retry=False)
    op.job_resources = Resources(memory="50M", time_limit=120)
    store = FakeStore()
    with pytest.raises(exc.SlurmOutOfMemory) as err:
        op.execute(make_context(store=store))
    assert err.value.job_id and "memory" in str(err.value)
    assert store.data["hpcai_job"]["failure"] == "oom"


# --------------------------------------------------------------------------- placement options
def _scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("transport", ["slurm_local", "slurm_rest"])  # the sbatch header and the REST job body
def test_reservation_tasks_per_node_and_exclusive_reach_slurm(transport: str, slurm_env, shared_workdir: str) -> None:
    name = f"hpcai_it_{transport}_{os.getpid()}"
    subprocess.run(["scontrol", "create", "reservation", f"ReservationName={name}", "StartTime=now",
                    "Duration=10", "Users=root,hpcai", "CoreCnt=2", "Nodes=vm"], check=True, capture_output=True)
    backend = SlurmBackend(transport)
    try:
        spec = JobSpec(name="it-resv", script="echo in-reservation",
                       resources=Resources(ntasks=2, ntasks_per_node=2, reservation=name, memory="32M",
                                           time_limit=120))
        result = _run(backend, spec, shared_workdir)
        assert result["state"] == "COMPLETED", result
        shown = _scontrol_job(result["job_id"])
        assert f"Reservation={name}" in shown and "NtasksPerN:B:S:C=2:" in shown, shown
    finally:
        subprocess.run(["scontrol", "delete", f"ReservationName={name}"], check=False, capture_output=True)
    result = _run(backend, JobSpec(name="it-exclusive", script="echo alone",
                                   resources=Resources(exclusive=True, memory="32M", time_limit=120)), shared_workdir)
    assert result["state"] == "COMPLETED", result
    assert "OverSubscribe=NO" in _scontrol_job(result["job_id"])


def test_an_unknown_reservation_is_refused_at_submission(slurm_env, shared_workdir: str) -> None:
    backend = SlurmBackend("slurm_local")
    spec = JobSpec(name="it-noresv", script="true",
                   resources=Resources(reservation="no_such_reservation", memory="32M", time_limit=60))
    with pytest.raises(exc.HpcAiError, match="(?i)reservation"):
        backend.submit(spec, workdir=shared_workdir)


def test_a_rotated_jwt_is_picked_up_by_a_long_lived_hook(slurm_env, monkeypatch) -> None:
    """The real slurmrestd refuses a stale token; once the connection holds the new one, the same hook works."""
    import json

    from airflow_provider_hpcai.exceptions import TransportError
    from airflow_provider_hpcai.hooks.slurm import SlurmHook

    good = json.loads(slurm_env["AIRFLOW_CONN_SLURM_REST"])
    header, payload, _ = good["password"].split(".")
    stale = dict(good, password=f"{header}.{payload}.c2lnbmVkLWJ5LXNvbWVib2R5LWVsc2U")  # a signature slurmrestd rejects
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROTATED", json.dumps(stale))
    hook = SlurmHook("slurm_rotated")
    with pytest.raises(TransportError) as refused:
        hook.partition_limits()
    assert refused.value.credentials and "scontrol token" in str(refused.value)
    assert stale["password"] not in str(refused.value)
    with pytest.raises(TransportError) as polled:  # /jobs: 24.11 answers HTTP 511 (error 1007), 22.05 HTTP 500
        hook.get_statuses(["1"])
    assert polled.value.credentials and stale["password"] not in str(polled.value)
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROTATED", json.dumps(good))  # the admin rotates the token
    assert "debug" in hook.partition_limits()
    assert hook.get_statuses(["1"]) is not None  # polls work again through the same hook
