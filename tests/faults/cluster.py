"""The local Slurm cluster as the fault suite sees it: jobs by tag, fault injection, restore.

Pure builders (:func:`dag_source`) and thin wrappers over ``squeue``, ``sacct``, ``scontrol``
and ``scripts/local-slurm`` / ``scripts/local-sshd``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX
from airflow_provider_hpcai.spec import make_tag

__all__ = [
    "TaskDef",
    "busy_reasons",
    "dag_source",
    "job_field",
    "jobs_for_tag",
    "live_jobs",
    "local_slurm",
    "local_sshd",
    "log_events",
    "node_name",
    "restore_cluster",
    "sacct_jobs",
    "tag_of",
    "wait_job",
    "wait_quiet",
    "wait_sacct",
]

ROOT = Path(__file__).resolve().parents[2]
#: Every DAG of this suite starts with this, so its jobs are told apart from other users'.
DAG_PREFIX = "hpcai_fx_"
_OTHERS = re.compile(r"pytest|bench_")


@dataclasses.dataclass(frozen=True)
class TaskDef:
    """One SlurmJobOperator task of a fault DAG.

    :param task_id: the task id.
    :param conn_id: the Slurm connection (transport).
    :param script: the job's bash commands.
    :param deferrable: wait in the triggerer (``False``: in the worker).
    :param memory: the memory request.
    :param time_limit: the time limit, seconds.
    :param container: the image the job runs in (``container=``; ``None``: on the node).
    """

    task_id: str
    conn_id: str = "slurm_local"
    script: str = "sleep 15; echo done"
    deferrable: bool = True
    memory: str = "32M"
    time_limit: int = 300
    container: str | None = None


def dag_source(dag_id: str, tasks: Sequence[TaskDef], *, workdir: str, retries: int = 0,
               hpcai_env: Mapping[str, str] | None = None) -> str:
    """The text of a DAG file with one independent task per :class:`TaskDef`.

    :param hpcai_env: ``AIRFLOW__HPCAI__*`` values this DAG's tasks see (set in the DAG file,
        which the worker parses before running a task, so one Airflow can run DAGs with
        different budgets side by side).
    """
    if not dag_id.startswith(DAG_PREFIX):
        raise ValueError(f"fault DAG ids start with {DAG_PREFIX!r}")
    lines = [
        "import os",
        "from datetime import datetime, timedelta",
        "from airflow.sdk import DAG",
        "from airflow_provider_hpcai.operators.slurm import SlurmJobOperator",
        "from airflow_provider_hpcai.resources import Resources",
    ]
    for key, value in (hpcai_env or {}).items():
        if not key.startswith("AIRFLOW__HPCAI__"):
            raise ValueError(f"only [hpcai] options may be set per DAG, got {key!r}")
        lines.append(f"os.environ[{key!r}] = {value!r}")
    lines += [
        f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,",
        f"         default_args={{'retries': {retries}, 'retry_delay': timedelta(seconds=1)}}):",
    ]
    for t in tasks:
        lines.append(
            f"    SlurmJobOperator(task_id={t.task_id!r}, slurm_conn_id={t.conn_id!r}, workdir={workdir!r}, "
            f"script={t.script!r}, deferrable={t.deferrable!r}, poll_interval=1, "
            f"job_resources=Resources(memory={t.memory!r}, time_limit={t.time_limit!r})"
            + (f", container={t.container!r})" if t.container else ")")
        )
    return "\n".join(lines) + "\n"


def tag_of(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The provider tag of a task instance's jobs (what ``--comment`` carries)."""
    return make_tag(dag_id, task_id, run_id, map_index)


def _run(argv: Sequence[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    return proc


# ---------------------------------------------------------------------------------- jobs
def live_jobs() -> dict[str, dict[str, str]]:
    """Jobs the controller knows: ``{job_id: {"state", "name", "comment", "user"}}``."""
    out = _run(["squeue", "-h", "-a", "--states=all", "-o", "%i|%T|%j|%k|%u"]).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            jobs[parts[0]] = {"state": parts[1], "name": parts[2], "comment": parts[3], "user": parts[4]}
    return jobs


def wait_job(tag: str, states: Iterable[str] = ("RUNNING",), timeout: float = 240) -> str:
    """Until the controller shows a job carrying ``tag`` in one of ``states``; its id."""
    wanted, deadline = set(states), time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id, job in live_jobs().items():
            if job["comment"] == COMMENT_PREFIX + tag and job["state"] in wanted:
                return job_id
        time.sleep(0.5)
    raise TimeoutError(f"no job with tag {tag} reached {sorted(wanted)} in {timeout:.0f} s")


def sacct_jobs(tag: str, since: str = "now-2hours") -> list[str]:
    """Every accounting record (requeues included) of a job carrying ``tag``: their job ids.

    ``sacct`` shows a job's comment only once the job has ended.
    """
    out = _run(["sacct", "-X", "-n", "-P", "-a", "-D", "--format=JobID,Comment", f"--starttime={since}"]).stdout
    return [line.split("|", 1)[0] for line in out.splitlines() if line.split("|", 1)[-1] == COMMENT_PREFIX + tag]


def wait_sacct(tag: str, count: int, timeout: float = 60) -> list[str]:
    """Accounting records of ``tag`` once there are at least ``count`` (accounting lags a little)."""
    deadline = time.monotonic() + timeout
    while True:
        found = sacct_jobs(tag)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(2)


def jobs_for_tag(tag: str) -> list[str]:
    """Every job carrying ``tag``: finished ones from accounting, live ones from the controller."""
    live = {j for j, job in live_jobs().items() if job["comment"] == COMMENT_PREFIX + tag}
    return sorted(set(sacct_jobs(tag)) | live, key=int)


def job_field(job_id: str, field: str) -> str | None:
    """One ``Key=Value`` field of ``scontrol show job`` (``None`` when absent)."""
    out = _run(["scontrol", "show", "job", "-o", str(job_id)], check=False).stdout
    found = re.search(rf"(?:^|\s){re.escape(field)}=(\S*)", out)
    return found.group(1) if found else None


def node_name() -> str:
    return os.environ.get("HPCAI_SLURM_NODE") or _run(["hostname", "-s"]).stdout.strip()


# ---------------------------------------------------------------------------------- faults
def local_slurm(command: str, timeout: float = 180) -> None:
    """``scripts/local-slurm <command>`` (up, restart-ctld, restart-rest, stop-ctld)."""
    _run(["bash", str(ROOT / "scripts/local-slurm"), command], timeout=timeout)


def local_sshd(command: str, timeout: float = 120) -> None:
    """``scripts/local-sshd <command>`` (up, down)."""
    _run(["bash", str(ROOT / "scripts/local-sshd"), command], timeout=timeout)


def kill_pidfile_tree(pidfile: Path) -> list[int]:
    """SIGKILL the process a pid file names and everything below it (a crash, connections cut)."""
    from tests.faults.stack import descendants

    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return []
    killed = []
    for child in reversed(descendants(pid)):
        try:
            os.kill(child, signal.SIGKILL)
            killed.append(child)
        except ProcessLookupError:
            pass
    return killed


def set_node(state: str, reason: str = "hpcai fault test") -> None:
    """``scontrol update nodename=<node> state=<state>`` (``down`` kills the jobs on it)."""
    argv = ["scontrol", "update", f"nodename={node_name()}", f"state={state}"]
    if state.lower() in ("down", "drain"):
        argv.append(f"reason={reason}")
    _run(argv)


def node_state() -> str:
    return _run(["sinfo", "-h", "-n", node_name(), "-o", "%T"]).stdout.strip().splitlines()[0]


def restore_cluster() -> list[str]:
    """Bring every service back (idempotent): Slurm daemons, the node, sshd. Returns what it did."""
    done = []
    for what, step in (
        ("local-slurm up", lambda: local_slurm("up", timeout=300)),
        ("node resume", lambda: set_node("resume") if re.search(r"down|drain", node_state()) else None),
        ("local-sshd up", lambda: local_sshd("up")),
    ):
        try:
            step()
            done.append(what)
        except Exception as err:  # keep restoring the rest, report each failure
            done.append(f"{what} FAILED: {err}")
    return done


# ---------------------------------------------------------------------------------- quiet gate
def _ancestry(pid: int) -> set[int]:
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                stat = handle.read()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return chain


def slurm_conf_of(env: Mapping[str, str]) -> str:
    """The ``slurm.conf`` a process with this environment would use (``scripts/local-slurm``'s layout).

    ``SLURM_CONF`` when set; otherwise the series' state folder (``HPCAI_SLURM_HOME``, or
    ``/var/lib/hpcai-slurm[-<version>]`` from ``HPCAI_SLURM_VERSION``; 22.05 has no suffix).
    """
    if env.get("SLURM_CONF"):
        return env["SLURM_CONF"]
    version = env.get("HPCAI_SLURM_VERSION") or "22.05"
    home = env.get("HPCAI_SLURM_HOME") or (
        "/var/lib/hpcai-slurm" if version == "22.05" else f"/var/lib/hpcai-slurm-{version}")
    return f"{home}/etc/slurm.conf"


def _process_env(pid: int) -> dict[str, str] | None:
    """The environment a process started with, or ``None`` when it cannot be read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def same_cluster(pid: int, conf: str) -> bool:
    """Whether process ``pid`` (a test or bench run) may use the cluster of ``conf``.

    A process whose environment names another series' cluster cannot disturb this one; one
    whose environment cannot be read counts as using it (the gate errs on the quiet side).
    """
    env = _process_env(pid)
    return env is None or slurm_conf_of(env) == conf


def busy_reasons(own_job_ids: Iterable[str] = ()) -> list[str]:
    """Why the cluster is not ours alone right now: other test/bench processes on the same
    cluster (a run against another Slurm series does not count), others' jobs."""
    from tests.faults.stack import cmdline, descendants

    mine = _ancestry(os.getpid()) | set(descendants(os.getpid()))
    conf = slurm_conf_of(os.environ)
    reasons = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in mine:
            line = cmdline(int(entry))
            if _OTHERS.search(line) and "pgrep" not in line and same_cluster(int(entry), conf):
                reasons.append(f"process {entry}: {line[:120]}")
    own = set(own_job_ids)
    for job_id, job in live_jobs().items():
        if job["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED") and job_id not in own \
                and not job["name"].startswith(DAG_PREFIX):
            reasons.append(f"job {job_id} {job['name']} ({job['user']}, {job['state']})")
    return reasons


def wait_quiet(max_wait: float, every: float = 30) -> list[str]:
    """Wait until nobody else uses the cluster; returns the remaining reasons ([] = quiet)."""
    deadline = time.monotonic() + max_wait
    while True:
        reasons = busy_reasons()
        if not reasons or time.monotonic() >= deadline:
            return reasons
        time.sleep(min(every, max(1.0, deadline - time.monotonic())))


# ---------------------------------------------------------------------------------- logs
def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of an Airflow task log (other lines are skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
