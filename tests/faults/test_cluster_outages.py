"""The cluster's services fail while tasks wait on running jobs.

Disruptive: each case first waits until nobody else uses the cluster, and always restores
every service afterwards (``scripts/local-slurm up``, ``scripts/local-sshd up``).
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import checks, cluster
from tests.faults.cluster import TaskDef
from tests.faults.stack import AirflowStack

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slurm, pytest.mark.ssh]

TRANSPORT_TASKS = [TaskDef("local", "slurm_local", "sleep 15; echo local-done"),
                   TaskDef("rest", "slurm_rest", "sleep 15; echo rest-done"),
                   TaskDef("ssh", "slurm_ssh", "sleep 15; echo ssh-done")]
#: The outage of slurmctld and the smaller budget one DAG is given.
CTLD_OUTAGE_S, SMALL_BUDGET_S = 40, 10


def _start(stack: AirflowStack, dag_id: str, tasks: list[TaskDef]) -> str:
    """Trigger ``dag_id``; return once every task is deferred on a RUNNING job."""
    run_id = stack.trigger(dag_id)
    for task in tasks:
        cluster.wait_job(cluster.tag_of(dag_id, task.task_id, run_id), states=("RUNNING",), timeout=240)
    stack.wait_states(dag_id, run_id, {"deferred"}, timeout=120)
    return run_id


def _all_succeeded_once(stack: AirflowStack, dag_id: str, run_id: str, tasks: list[TaskDef]) -> None:
    for task in tasks:
        checks.finished_task(stack, dag_id, run_id, task.task_id)
        result = checks.result_in_xcom(stack, dag_id, run_id, task.task_id)
        assert checks.one_job_per_try(dag_id, run_id, task.task_id) == [result["job_id"]]
        with open(result["stdout_path"], encoding="utf-8") as handle:
            assert f"{task.task_id}-done" in handle.read()


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?")


def _retry_delays(stack: AirflowStack, conn_id: str, since: float) -> list[float]:
    """The poller's announced waits between failed status queries on ``conn_id`` after ``since``.

    The poller runs inside the triggerer's trigger runner; its log lines land in the triggerer's
    output or in the log of the trigger whose task started it, so both are searched.
    """
    pattern = re.compile(rf"Status query on {re.escape(conn_id)} failed \((\d+) in a row[^)]*\), "
                         rf"retrying in (\d+) s")
    texts = [stack.output("triggerer")]
    texts += [p.read_text(errors="replace") for p in (stack.home / "logs").rglob("*.log.trigger.*")]
    delays: dict[int, float] = {}  # each failure is announced in every waiting task's log too: count it once
    for text in texts:
        for line in text.splitlines():
            found, stamp = pattern.search(line), _STAMP.search(line)
            if found and stamp and dt.datetime.fromisoformat(stamp.group(0) + "+00:00").timestamp() >= since:
                delays[int(found.group(1))] = float(found.group(2))
    return list(delays.values())


def _assert_bounded(delays: list[float], outage_s: float) -> None:
    """Some retries, never a tight loop: each wait is 0.5-1 x min(max_poll_interval (2 s), 2**n s)."""
    assert delays, "the outage was never noticed"
    assert all(1 <= d <= 2 for d in delays), delays
    assert len(delays) <= outage_s + 10, f"{len(delays)} failed queries in {outage_s} s"


def test_slurmctld_restarted_while_jobs_run(stack: AirflowStack, deploy, quiet_cluster) -> None:
    dag_id = deploy("hpcai_fx_ctld_restart", TRANSPORT_TASKS)
    run_id = _start(stack, dag_id, TRANSPORT_TASKS)
    cluster.local_slurm("restart-ctld")
    stack.wait_done(dag_id, run_id, timeout=240)
    _all_succeeded_once(stack, dag_id, run_id, TRANSPORT_TASKS)


@pytest.fixture(scope="module")
def ctld_outage(stack: AirflowStack, fault_workdir: str) -> Iterator[dict[str, Any]]:
    """slurmctld down for 40 s under three DAGs.

    ``patient``: the default budget, on all three transports. ``hurried``: a 10-s budget on a
    connection of its own (``slurm_local_budget``). ``shared``: a 10-s budget on
    ``slurm_local``, triggered after ``patient`` already waits on that connection.
    """
    checks.claim_quiet_cluster()
    budget = {"AIRFLOW__HPCAI__OUTAGE_BUDGET": str(SMALL_BUDGET_S)}
    dags = {
        "hpcai_fx_ctld_outage": (TRANSPORT_TASKS, None),
        "hpcai_fx_ctld_budget": ([TaskDef("local", "slurm_local_budget", "sleep 15; echo local-done")], budget),
        "hpcai_fx_ctld_shared": ([TaskDef("local", "slurm_local", "sleep 15; echo local-done")], budget),
    }
    try:
        for dag_id, (tasks, env) in dags.items():
            source = cluster.dag_source(dag_id, tasks, workdir=fault_workdir, hpcai_env=env)
            (stack.dags / f"{dag_id}.py").write_text(source)
        runs = {}
        for dag_id, (tasks, _env) in dags.items():  # in order: patient's triggers create the pollers
            stack.wait_dag(dag_id)
            runs[dag_id] = _start(stack, dag_id, tasks)
        since = time.time()
        cluster.local_slurm("stop-ctld")
        stopped = time.monotonic()
        time.sleep(CTLD_OUTAGE_S)
        during = {d: {k: t["state"] for k, t in stack.task_instances(d, r).items()} for d, r in runs.items()}
        assert time.monotonic() - stopped < CTLD_OUTAGE_S + 20
        cluster.local_slurm("up")
        for dag_id, run_id in runs.items():
            stack.wait_done(dag_id, run_id, timeout=240)
        yield {"runs": runs, "during": during, "since": since}
    finally:
        checks.restore_or_fail()


def test_long_controller_outage_is_ridden_out(stack: AirflowStack, ctld_outage: dict[str, Any]) -> None:
    dag_id = "hpcai_fx_ctld_outage"
    run_id = ctld_outage["runs"][dag_id]
    assert set(ctld_outage["during"][dag_id].values()) == {"deferred"}, ctld_outage["during"]
    _all_succeeded_once(stack, dag_id, run_id, TRANSPORT_TASKS)
    for conn_id in ("slurm_local", "slurm_rest", "slurm_ssh"):
        _assert_bounded(_retry_delays(stack, conn_id, ctld_outage["since"]), CTLD_OUTAGE_S)


def _failed_past_budget(stack: AirflowStack, dag_id: str, run_id: str) -> None:
    ti = checks.finished_task(stack, dag_id, run_id, "local", state="failed")
    log = stack.task_log(dag_id, run_id, "local", ti["try_number"])
    assert "ControllerUnavailableError" in log, log[-3000:]
    assert f"(budget {SMALL_BUDGET_S} s)" in log and "clear the task and it reattaches" in log, log[-3000:]
    assert stack.xcom(dag_id, run_id, "local") is None
    checks.one_job_per_try(dag_id, run_id, "local", tries=1)


def test_outage_past_the_budget_fails_with_a_clear_error(stack: AirflowStack, ctld_outage: dict[str, Any]) -> None:
    dag_id = "hpcai_fx_ctld_budget"
    # Within the outage the trigger gave up (the task left "deferred"); how far the scheduler and a
    # worker then got before the snapshot depends on the machine's load.
    assert ctld_outage["during"][dag_id]["local"] in {"scheduled", "queued", "running", "failed"}, \
        ctld_outage["during"]
    _failed_past_budget(stack, dag_id, ctld_outage["runs"][dag_id])


def test_each_task_keeps_its_own_budget_on_a_shared_connection(stack: AirflowStack,
                                                              ctld_outage: dict[str, Any]) -> None:
    dag_id = "hpcai_fx_ctld_shared"
    _failed_past_budget(stack, dag_id, ctld_outage["runs"][dag_id])


def test_clearing_after_the_budget_adopts_the_finished_job(stack: AirflowStack,
                                                          ctld_outage: dict[str, Any]) -> None:
    dag_id = "hpcai_fx_ctld_budget"
    run_id = ctld_outage["runs"][dag_id]
    first = checks.one_job_per_try(dag_id, run_id, "local", tries=1)
    stack.api("POST", f"/dags/{dag_id}/clearTaskInstances",
              {"dry_run": False, "task_ids": ["local"], "dag_run_id": run_id, "only_failed": True,
               "reset_dag_runs": True})
    stack.wait_until("the cleared task to finish", lambda: stack.task_instances(dag_id, run_id)["local"]["state"]
                     in ("success", "failed"), timeout=180)
    checks.finished_task(stack, dag_id, run_id, "local", tries=2)
    result = checks.result_in_xcom(stack, dag_id, run_id, "local")
    assert result["job_id"] == first[0]
    checks.one_job_per_try(dag_id, run_id, "local", tries=1)


def test_slurmrestd_down_for_a_minute(stack: AirflowStack, deploy, quiet_cluster, slurm_env) -> None:
    tasks = [TaskDef("rest", "slurm_rest", "sleep 20; echo rest-done")]
    dag_id = deploy("hpcai_fx_rest_down", tasks)
    run_id = _start(stack, dag_id, tasks)
    since = time.time()
    home = Path(slurm_env.get("HPCAI_SLURM_HOME") or "/var/lib/hpcai-slurm")
    assert cluster.kill_pidfile_tree(home / "run" / "slurmrestd.pid"), "slurmrestd was not running"
    time.sleep(60)
    assert stack.task_instances(dag_id, run_id)["rest"]["state"] == "deferred"
    cluster.local_slurm("up")
    stack.wait_done(dag_id, run_id, timeout=180)
    _all_succeeded_once(stack, dag_id, run_id, tasks)
    _assert_bounded(_retry_delays(stack, "slurm_rest", since), 60)


def test_ssh_connection_cut_mid_wait(stack: AirflowStack, deploy, quiet_cluster, ssh_env) -> None:
    tasks = [TaskDef("ssh", "slurm_ssh", "sleep 20; echo ssh-done")]
    dag_id = deploy("hpcai_fx_ssh_cut", tasks)
    run_id = _start(stack, dag_id, tasks)
    since = time.time()
    home = Path(ssh_env.get("HPCAI_SSHD_HOME") or "/var/lib/hpcai-sshd")
    killed = cluster.kill_pidfile_tree(home / "sshd.pid")  # the listener and every open session
    assert len(killed) >= 2, f"expected the listener and the triggerer's session, killed {killed}"
    time.sleep(30)
    assert stack.task_instances(dag_id, run_id)["ssh"]["state"] == "deferred"
    cluster.local_sshd("up")
    stack.wait_done(dag_id, run_id, timeout=180)
    _all_succeeded_once(stack, dag_id, run_id, tasks)
    _assert_bounded(_retry_delays(stack, "slurm_ssh", since), 30)


def _running(pid: int) -> bool:
    """``pid`` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_up_after_the_machine_stopped_without_down(quiet_cluster, slurm_env) -> None:
    """Every daemon SIGKILLed at once, state and pid files left behind (a VM or container that
    was stopped and started again): ``local-slurm up`` brings the whole cluster back."""
    home = Path(slurm_env.get("HPCAI_SLURM_HOME") or "/var/lib/hpcai-slurm")
    pidfiles = [home / "run" / name for name in
                ("slurmrestd.pid", "slurmd.pid", "slurmctld.pid", "slurmdbd.pid", "mysqld/mysqld.pid")]
    killed = []
    for pidfile in pidfiles:
        pids = cluster.kill_pidfile_tree(pidfile)
        assert pids, f"{pidfile.name} named no running daemon"
        killed += pids
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in killed):
        assert time.monotonic() < deadline, "SIGKILLed daemons still running after 30 s"
        time.sleep(0.2)
    assert all(p.exists() for p in pidfiles), "the stale pid files this case is about are gone"
    started = time.monotonic()
    cluster.local_slurm("up", timeout=300)
    assert time.monotonic() - started < 240
    # "completing": a job that was ending when its slurmd was killed; the node still takes work
    assert re.fullmatch(r"idle|mixed|allocated|completing", cluster.node_state()), cluster.node_state()
    job = subprocess.run(["srun", "-N1", "-t", "1", "hostname"], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
