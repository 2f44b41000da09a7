"""The local Slurm cluster and loopback sshd that the other integration suites use.

Brings both up (idempotent: about 0.1 s when already up, 10-20 s from cold) and checks
what the rest of the project relies on: every daemon answers, a job submitted through
slurmrestd as ``hpcai`` runs and reaches accounting, and key login over ssh reaches the
Slurm client commands. Needs root (the scripts start daemons and create users).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
LOCAL_SLURM = REPO / "scripts" / "local-slurm"
LOCAL_SSHD = REPO / "scripts" / "local-sshd"


def _run(*args: str | Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


def _client_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with the cluster's ``SLURM_CONF`` and, for a built Slurm, its clients first."""
    path = env.get("PATH", "$PATH").replace("$PATH", os.environ.get("PATH", ""))
    return {**os.environ, "SLURM_CONF": env["SLURM_CONF"], "PATH": path}


def _parse_exports(text: str) -> dict[str, str]:
    """Turn ``export NAME='value'`` lines into a dict, the way ``eval`` would."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", f"unexpected line from env: {line!r}"
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


def _up(script: Path) -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip(f"{script.name} needs root (it starts daemons and creates users)")
    up = _run(script, "up", timeout=600)
    assert up.returncode == 0, f"{script.name} up failed:\n{up.stderr[-3000:]}"
    env = _run(script, "env")
    assert env.returncode == 0, env.stderr
    return _parse_exports(env.stdout)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    return _up(LOCAL_SLURM)


@pytest.fixture(scope="module")
def sshd_env(slurm_env: dict[str, str]) -> dict[str, str]:
    return _up(LOCAL_SSHD)


def _rest(env: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        env["HPCAI_SLURM_REST_URL"] + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            "X-SLURM-USER-NAME": env["HPCAI_SLURM_REST_USER"],
            "X-SLURM-USER-TOKEN": env["HPCAI_SLURM_REST_TOKEN"],
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _newest_api(env: dict[str, str]) -> str:
    """The newest ``/slurm/<version>`` the cluster's slurmrestd lists (v0.0.38 on 22.05, v0.0.42 on 24.11)."""
    paths = _rest(env, "GET", "/openapi/v3")["paths"]
    versions = {p.split("/")[2] for p in paths if p.startswith("/slurm/v")}
    return max(versions, key=lambda v: tuple(int(x) for x in v[1:].split(".")))


def _wait(what: str, probe: Any, timeout: float = 90, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.mark.slurm
def test_status_reports_every_daemon_up(slurm_env: dict[str, str]) -> None:
    status = _run(LOCAL_SLURM, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()}
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "slurmd-het", "slurmrestd"):
        assert daemon in lines and lines[daemon].split()[1] == "up", status.stdout
    # The environment a DAG evals: a token, and connections Airflow can parse.
    assert slurm_env["HPCAI_SLURM_REST_TOKEN"].count(".") == 2
    rest = json.loads(slurm_env["AIRFLOW_CONN_SLURM_REST"])
    assert rest["conn_type"] == "slurm" and rest["password"] == slurm_env["HPCAI_SLURM_REST_TOKEN"]
    built = slurm_env.get("HPCAI_SLURM_VERSION")  # a version built here: its REST jobs find its own srun first
    extra = dict(rest["extra"])
    job_path = extra.pop("job_path", None)
    assert extra == {
        "transport": "rest",
        "base_url": slurm_env["HPCAI_SLURM_REST_URL"],
        "user": "hpcai",
        "api_version": "auto",
    }
    assert (job_path is not None) == bool(built)
    if built:
        assert job_path.split(":")[0] == slurm_env["PATH"].split(":")[0]  # the version's own bin, first
    assert json.loads(slurm_env["AIRFLOW_CONN_SLURM_LOCAL"])["extra"] == {"transport": "local"}


@pytest.mark.slurm
def test_rest_job_as_hpcai_completes_and_reaches_accounting(slurm_env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    out = f"/home/hpcai/itest-{tag}.out"
    body = {
        "script": '#!/bin/bash\necho "user=$(id -un) tag=$HPCAI_TAG"\n',
        "job": {
            "name": f"itest-{tag}",
            "partition": slurm_env["HPCAI_SLURM_PARTITION"],
            "current_working_directory": "/home/hpcai",
            "environment": {"PATH": "/usr/bin:/bin", "HPCAI_TAG": tag},
            "standard_output": out,
            "comment": f"itest:{tag}",
            "time_limit": 2,
            "memory_per_node": 64,
        },
    }
    api = _newest_api(slurm_env)
    if api != "v0.0.38":  # v0.0.40+: the environment as a list, numbers as {set, number}, the script in the job
        job = body["job"]
        job["environment"] = [f"{k}={v}" for k, v in job["environment"].items()]
        for key in ("time_limit", "memory_per_node"):
            job[key] = {"set": True, "infinite": False, "number": job[key]}
        job["script"] = body.pop("script")
    submitted = _rest(slurm_env, "POST", f"/slurm/{api}/job/submit", body)
    assert submitted["errors"] == [], submitted["errors"]
    job_id = submitted["job_id"]

    def state_of(job: dict[str, Any]) -> str:
        return job["job_state"][0] if isinstance(job["job_state"], list) else job["job_state"]

    def finished() -> dict[str, Any] | None:
        job = _rest(slurm_env, "GET", f"/slurm/{api}/job/{job_id}")["jobs"][0]
        active = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")
        return None if state_of(job) in active else job

    job = _wait(f"job {job_id} to leave the queue", finished, timeout=60)
    assert state_of(job) == "COMPLETED" and job["user_name"] == "hpcai"
    assert job["comment"] == f"itest:{tag}"
    assert Path(out).read_text() == f"user=hpcai tag={tag}\n"

    def accounted() -> str | None:
        res = _run("sacct", "-j", str(job_id), "-X", "-n", "--parsable2", "--format=State,ExitCode,Comment",
                   env=_client_env(slurm_env))
        line = res.stdout.strip()
        return line if line.startswith("COMPLETED") else None

    record = _wait(f"sacct to show job {job_id} COMPLETED", accounted, timeout=30)
    assert record == f"COMPLETED|0:0|itest:{tag}"
    Path(out).unlink()


@pytest.mark.slurm
@pytest.mark.ssh
def test_ssh_key_login_runs_squeue(sshd_env: dict[str, str]) -> None:
    res = _run(
        "ssh", "-p", sshd_env["HPCAI_SSH_PORT"], "-i", sshd_env["HPCAI_SSH_KEY_FILE"],
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", f"{sshd_env['HPCAI_SSH_USER']}@{sshd_env['HPCAI_SSH_HOST']}",
        "id -un && squeue --noheader --format=%i --user=hpcai && sinfo --noheader --format=%P",
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "hpcai"
    assert "debug*" in lines and "long" in lines


@pytest.mark.ssh
def test_ssh_rejects_password_and_root_login(sshd_env: dict[str, str]) -> None:
    host = sshd_env["HPCAI_SSH_HOST"]
    common = [
        "-p", sshd_env["HPCAI_SSH_PORT"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    no_key = _run("ssh", *common, "-o", "PubkeyAuthentication=no", f"hpcai@{host}", "true")
    assert no_key.returncode == 255 and "Permission denied" in no_key.stderr
    as_root = _run("ssh", *common, "-i", sshd_env["HPCAI_SSH_KEY_FILE"], f"root@{host}", "true")
    assert as_root.returncode == 255


@pytest.mark.slurm
@pytest.mark.ssh
def test_airflow_ssh_hook_logs_in_with_the_printed_connection(
    sshd_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh_hook_module = pytest.importorskip("airflow.providers.ssh.hooks.ssh")
    monkeypatch.setenv("AIRFLOW_CONN_SSH_HPCAI", sshd_env["AIRFLOW_CONN_SSH_HPCAI"])
    hook = ssh_hook_module.SSHHook(ssh_conn_id="ssh_hpcai")
    with hook.get_conn() as client:
        rc, out, _ = hook.exec_ssh_client_command(
            client, "id -un; sinfo -h -o %P", get_pty=False, environment=None
        )
    assert rc == 0
    assert out.decode().split() == ["hpcai", "debug*", "long", "het"]
