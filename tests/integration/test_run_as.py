"""Jobs that run as their owner, on the real local cluster (issue 18).

Two DAG owners (``alice``, ``bob``) map to two Slurm users (``hpcai-alice``, ``hpcai-bob``, made
by ``scripts/local-slurm up``) through ``[hpcai] run_as_users`` / ``run_as_mapping``. Through
each transport (local: ``sudo -u``; rest: ``X-SLURM-USER-NAME`` with root's token, root being
this cluster's SlurmUser; ssh: each user's own connection) their jobs run as those users
(``sacct -o User``), in private folders, and one user's output cannot be read for the other. A
DAG whose owner is root is refused before anything reaches the cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import ConfigurationError, HpcAiError, TransportError
from airflow_provider_hpcai.identity import RunAsRefusedError
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import make_tag
from tests.support import FakeStore, make_context, run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

USERS = {"alice": "hpcai-alice", "bob": "hpcai-bob"}
TRANSPORTS = ["slurm_local", "slurm_rest_priv", "slurm_ssh"]


def _root_token() -> str:
    out = subprocess.run(["scontrol", "token", "username=root", "lifespan=3600"], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().partition("SLURM_JWT=")[2]


@pytest.fixture(scope="module")
def run_as_env(slurm_env, ssh_env):
    """The identity options and the connections of both users, for this module's tests."""
    for user in USERS.values():
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.fail(f"user {user} is missing: run scripts/local-slurm up (it creates the run-as test users)")
    key_root = Path(ssh_env["HPCAI_SSH_KEY_FILE"]).parent
    env = {
        "AIRFLOW__HPCAI__RUN_AS_USERS": ",".join(USERS.values()),
        "AIRFLOW__HPCAI__RUN_AS_MAPPING": ",".join(f"{k}={v}" for k, v in USERS.items()),
        "AIRFLOW_CONN_SLURM_REST_PRIV": json.dumps({
            "conn_type": "slurm", "login": "root", "password": _root_token(),
            "extra": {"transport": "rest", "base_url": slurm_env["HPCAI_SLURM_REST_URL"]}}),
    }
    for user in USERS.values():
        env[f"AIRFLOW_CONN_SSH_{user.upper()}"] = json.dumps({
            "conn_type": "ssh", "host": ssh_env["HPCAI_SSH_HOST"], "port": int(ssh_env["HPCAI_SSH_PORT"]),
            "login": user, "extra": {"key_file": str(key_root / user / "id_ed25519"), "no_host_key_check": True}})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _operator(owner: str, conn_id: str, script: str, *, dag_id: str, **kwargs) -> SlurmJobOperator:
    with DAG(dag_id=dag_id, schedule=None, default_args={"owner": owner}):
        return SlurmJobOperator(task_id="job", slurm_conn_id=conn_id, script=script, poll_interval=1,
                                job_resources=Resources(memory="64M", time_limit=300), **kwargs)


def _sacct(job_id: str) -> tuple[str, str]:
    """``(User, State)`` of a job as accounting records it (waits for slurmdbd a little)."""
    for _ in range(30):
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "User,State"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if out and not out.endswith(("PENDING", "RUNNING")):
            user, _, state = out.splitlines()[0].partition("|")
            return user, state
        time.sleep(1)
    raise AssertionError(f"sacct has no final record of job {job_id}: {out!r}")


def _tag_jobs(tag: str, *, expect_some: bool = False) -> list[str]:
    """Ids of the jobs of the last hour (queued or in accounting) whose comment carries ``tag``.

    A time-window ``sacct`` (22.05) leaves out a job that ended in about the last second, though
    ``sacct -j`` already has it; with ``expect_some`` the lookup waits up to 10 s for the window.
    """
    for _ in range(20):
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "--starttime=now-1hour", "-o", "JobID,Comment"],
                             capture_output=True, text=True, check=True).stdout
        queued = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
        found = sorted({line.split("|")[0] for line in (out + queued).splitlines() if line.endswith(tag)})
        if found or not expect_some:
            return found
        time.sleep(0.5)
    return []


@pytest.mark.parametrize("conn_id", TRANSPORTS)
def test_two_owners_jobs_run_as_their_slurm_users_and_cannot_read_each_other(run_as_env, conn_id: str) -> None:
    refs = {}
    for owner, user in USERS.items():
        op = _operator(owner, conn_id, 'echo "I am $(id -un)"; echo secret-of-$(id -un) >&2',
                       dag_id=f"it_run_as_{owner}", deferrable=False)
        result = op.execute(make_context())
        assert result["state"] == "COMPLETED", result
        assert result["elapsed_seconds"] is not None and result["node_list"], result  # accounting, read as the user
        ref = op.job_ref
        assert ref.extra["run_as"] == user
        assert _sacct(ref.job_id) == (user, "COMPLETED")
        backend = SlurmBackend(conn_id, run_as=user)
        assert backend.read_output(ref, "stdout", 0, 4096).decode().rstrip().endswith(f"I am {user}")
        folder = os.stat(ref.extra["workdir"])
        assert folder.st_uid == pwd.getpwnam(user).pw_uid and stat.S_IMODE(folder.st_mode) == 0o700
        refs[user] = ref
    alice, bob = refs["hpcai-alice"], refs["hpcai-bob"]
    as_bob = SlurmBackend(conn_id, run_as="hpcai-bob")
    for stream in ("stdout", "stderr"):
        with pytest.raises((RunAsRefusedError, TransportError), match="permission denied|refusing"):
            as_bob.read_output(alice, stream, 0, 4096)
    with pytest.raises((RunAsRefusedError, TransportError), match="permission denied|refusing"):
        SlurmBackend(conn_id, run_as="hpcai-alice").read_file(bob.stderr_path)


def test_a_file_of_the_other_user_outside_a_private_folder_is_refused_by_the_provider(run_as_env) -> None:
    """Even where the kernel would let bob read it (mode 0644 in a shared folder), the provider does not."""
    folder = Path("/tmp") / f"hpcai-it-runas-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o755)
    try:
        leaked = folder / "alice.out"
        leaked.write_text("alice's result\n")
        os.chown(leaked, pwd.getpwnam("hpcai-alice").pw_uid, -1)
        leaked.chmod(0o644)
        for conn_id in ("slurm_local", "slurm_ssh"):
            with pytest.raises(RunAsRefusedError, match="belongs to 'hpcai-alice'"):
                SlurmBackend(conn_id, run_as="hpcai-bob").read_file(str(leaked))
            assert SlurmBackend(conn_id, run_as="hpcai-alice").read_file(str(leaked)) == b"alice's result\n"
    finally:
        subprocess.run(["rm", "-rf", "--", str(folder)], check=False)


@pytest.mark.parametrize("conn_id", TRANSPORTS)
def test_deferred_wait_streams_the_log_and_a_retry_reattaches_as_the_user(run_as_env, conn_id: str) -> None:
    op = _operator("alice", conn_id, "for i in 1 2 3; do echo line-$i; sleep 1; done", dag_id="it_run_as_defer",
                   deferrable=True)
    context = make_context(store=FakeStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    job_id = trigger.job_id
    assert trigger.serialize()[1]["ref"]["extra"]["run_as"] == "hpcai-alice"
    # A retry while the job runs adopts it (found as the user, by its tag), no second job.
    retry = make_context(run_id=context["run_id"], store=context["task_state_store"], try_number=2)
    with pytest.raises(TaskDeferred) as again:
        _operator("alice", conn_id, "for i in 1 2 3; do echo line-$i; sleep 1; done", dag_id="it_run_as_defer",
                  deferrable=True).execute(retry)
    assert again.value.trigger.job_id == job_id
    # The triggerer rebuilds the backend from the serialized trigger: as the same user.
    _classpath, kwargs = trigger.serialize()
    from airflow_provider_hpcai.triggers.job import JobTrigger

    rebuilt = JobTrigger(**kwargs)
    rebuilt.stream_logs = True
    seen: list[str] = []
    rebuilt.log.info = lambda msg, *a, **k: seen.append(msg % a if a else msg)  # type: ignore[method-assign]

    async def first_event():
        async for event in rebuilt.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), 120))
    assert event.payload["state"] == "COMPLETED", event.payload
    assert any("line-3" in line for line in seen), seen
    result = op.execute_complete(context, event.payload)
    assert result["state"] == "COMPLETED"
    assert _sacct(job_id) == ("hpcai-alice", "COMPLETED")
    assert _tag_jobs(make_tag("it_run_as_defer", "job", context["run_id"]), expect_some=True) == [job_id]


@pytest.mark.parametrize("conn_id", TRANSPORTS)
def test_cancel_acts_as_the_user(run_as_env, conn_id: str) -> None:
    op = _operator("bob", conn_id, "sleep 120", dag_id="it_run_as_cancel", deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context())
    # Alice may not cancel bob's job: Slurm itself refuses her.
    with pytest.raises(HpcAiError):
        SlurmBackend(conn_id, run_as="hpcai-alice").cancel(op.job_ref)
    op.on_kill()
    # Accounting names who cancelled it: bob's own uid, not root's or the service account's.
    assert _sacct(op.job_ref.job_id) == ("hpcai-bob", f"CANCELLED by {pwd.getpwnam('hpcai-bob').pw_uid}")


def test_a_dag_owned_by_root_is_refused_before_submission(run_as_env, monkeypatch) -> None:
    for conn_id in TRANSPORTS:
        context = make_context()
        op = _operator("root", conn_id, "echo should-not-run", dag_id="it_run_as_root", deferrable=False)
        with pytest.raises(RunAsRefusedError, match="owner 'root': jobs never run as root"):
            op.execute(context)
        assert "job_id" not in context["ti"].xcom
        assert _tag_jobs(make_tag("it_run_as_root", "job", context["run_id"])) == []
    # Mapping an owner to root is a configuration error, also before anything is sent.
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_MAPPING", "ops=root")
    with pytest.raises(ConfigurationError, match="root"):
        _operator("ops", "slurm_local", "echo no", dag_id="it_run_as_root", deferrable=False).execute(make_context())
    with pytest.raises(RunAsRefusedError, match="root"):
        _operator("alice", "slurm_local", "echo no", dag_id="it_run_as_root", run_as="root")


def test_an_unmapped_owner_is_refused_not_run_as_the_service_account(run_as_env) -> None:
    context = make_context()
    with pytest.raises(RunAsRefusedError, match="maps to no Slurm user"):
        _operator("carol", "slurm_local", "echo no", dag_id="it_run_as_unmapped", deferrable=False).execute(context)
    assert _tag_jobs(make_tag("it_run_as_unmapped", "job", context["run_id"])) == []


def test_the_sudo_rule_lets_the_runner_act_as_the_test_users_only(run_as_env) -> None:
    runner = "hpcai"
    ok = subprocess.run(["runuser", "-u", runner, "--", "sudo", "-n", "-u", "hpcai-alice", "--", "/usr/bin/squeue",
                         "--me", "-h"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    for argv in (["-u", "root", "--", "/usr/bin/squeue"], ["-u", "hpcai-alice", "--", "/bin/bash", "-c", "id"]):
        refused = subprocess.run(["runuser", "-u", runner, "--", "sudo", "-n", *argv], capture_output=True, text=True)
        assert refused.returncode != 0 and "password is required" in refused.stderr


DAGS = """
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

for owner, conn_id in (("alice", "slurm_local"), ("bob", "slurm_rest_priv"), ("root", "slurm_local")):
    with DAG(dag_id=f"run_as_{owner}", schedule=None, default_args={"owner": owner}):
        SlurmJobOperator(task_id="whoami", slurm_conn_id=conn_id, script='echo "job user: $(id -un)"',
                         poll_interval=1, job_resources={"memory": "64M", "time_limit": 120})
"""


@pytest.mark.slow
def test_airflow_runs_two_owners_dags_as_their_slurm_users_and_refuses_root(run_as_env, airflow_home, tmp_path):
    """``airflow dags test`` (deferred, the triggerer path in-process) for each owner's DAG."""
    (tmp_path / "run_as_dags.py").write_text(DAGS)
    for owner, user in USERS.items():
        rc, log = run_dags_test(airflow_home, f"run_as_{owner}", AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path))
        assert rc == 0, log[-4000:]
        assert "new_state=deferred" in log and f"job user: {user}" in log  # output streamed from the user's job
        job_id = re.search(r"Submitted Slurm job (\d+)", log).group(1)
        assert _sacct(job_id) == (user, "COMPLETED")
    rc, log = run_dags_test(airflow_home, "run_as_root", AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path))
    assert rc != 0 or "state=failed" in log
    assert "jobs never run as root" in log and "Submitted Slurm job" not in log
