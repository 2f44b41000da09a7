"""KubernetesJobStageOperator end to end (submit, defer or wait, resume) against the fake API server."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.operators.kubernetes import KubernetesJobStageOperator, command_script
from tests.support import FakeStore, make_context
from tests.unit.kubernetes.fake_k8s import FakeCluster, Outcome
from tests.unit.kubernetes.helpers import ROOT


def _first_event(trigger) -> dict:
    """Run the trigger to its first event (the one the operator resumes with)."""

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first())


def _op(**kwargs: object) -> KubernetesJobStageOperator:
    args = {
        "task_id": "stage",
        "image": "registry.example/app:3",
        "script": "echo hi",
        "deferrable": False,
        "poll_interval": 0,
        "job_resources": {"memory": "1G", "time_limit": 300},
    } | kwargs
    return KubernetesJobStageOperator(**args)


def test_cmds_become_one_quoted_argv() -> None:
    cmds = ["python", "-c", "print('a b'); import os", "$HOME", "`id`"]
    script = command_script(cmds)
    assert shlex.split(script) == ["exec", *cmds]
    with pytest.raises(exc.InvalidJobSpecError):
        command_script("python -m app")  # type: ignore[arg-type]


def test_exactly_one_of_script_or_cmds() -> None:
    with pytest.raises(exc.InvalidJobSpecError, match="exactly one"):
        _op(cmds=["true"])
    with pytest.raises(exc.InvalidJobSpecError, match="exactly one"):
        _op(script=None)


def test_runs_the_image_and_returns_the_result(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("succeed", log="done\n"))
    op = _op(
        cmds=["python", "-m", "app", "--n", "4"],
        script=None,
        node_selector={"pool": "hpc"},
        priority_class_name="batch",
    )
    context = make_context()
    result = op.execute(context)
    assert result["state"] == "COMPLETED" and result["kind"] == "Job"
    assert context["ti"].xcom["job_id"] == result["job_id"]
    pod = cluster.created[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/app:3"
    assert container["command"] == ["/bin/bash", "-c", "exec python -m app --n 4"]
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert pod["nodeSelector"] == {"pool": "hpc"} and pod["priorityClassName"] == "batch"
    assert cluster.created[0]["spec"]["activeDeadlineSeconds"] == 300


def test_oom_raises_and_the_retry_asks_for_more_memory(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("oom"), Outcome("succeed"))
    store = FakeStore()
    run_id = "manual__1"
    with pytest.raises(exc.SlurmOutOfMemory):
        _op().execute(make_context(run_id=run_id, store=store))
    _op().execute(make_context(run_id=run_id, store=store, try_number=2))
    first, second = (
        c["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        for c in cluster.created
    )
    assert first == "1Gi" and second != first


def test_deferrable_path_hands_the_wait_to_our_trigger(cluster: FakeCluster) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    cluster.plan(Outcome("succeed", log="from the pod\n"))
    op = _op(deferrable=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "JobTrigger"  # the one trigger of every backend

    event = _first_event(trigger)
    result = _op(deferrable=True).execute_complete(context, event)
    assert result["state"] == "COMPLETED" and result["job_id"] == trigger.job_id


def test_a_retry_reattaches_to_the_running_job_instead_of_submitting_again(cluster: FakeCluster) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    cluster.plan(Outcome("hang"))
    run_id = "manual__2"
    with pytest.raises(TaskDeferred):
        _op(deferrable=True).execute(make_context(run_id=run_id))  # the worker "crashes" after submitting
    with pytest.raises(TaskDeferred) as again:  # a new try, without the state store: found by its label
        _op(deferrable=True).execute(make_context(run_id=run_id, try_number=2))
    assert len(cluster.created) == 1
    assert again.value.trigger.job_id == cluster.created[0]["metadata"]["name"]


def test_on_kill_deletes_the_job(cluster: FakeCluster) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    cluster.plan(Outcome("hang"))
    op = _op(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context())
    op.on_kill()
    assert [d[0] for d in cluster.deleted] == ["Job"] and not cluster.pods


def test_importing_the_operator_does_not_import_the_kubernetes_client() -> None:
    code = (
        "import sys, airflow_provider_hpcai.operators.kubernetes\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_deferred_wait_streams_the_log_and_each_line_reaches_the_task_log_once(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While deferred, the trigger copies the pod's new lines; the resumed task shows only the rest."""
    from airflow.sdk.exceptions import TaskDeferred

    from tests.unit.kubernetes.helpers import ListLog

    lines = [f"step {i} residual {10.0 ** -i:.1e}" for i in range(6)]
    cluster.plan(Outcome("succeed", log="\n".join(lines) + "\nno newline at the end", running_reads=4))
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        _op(deferrable=True).execute(context)
    trigger = deferred.value.trigger
    assert trigger.stream_logs  # [hpcai] stream_logs defaults to on
    trigger_log, task_log = ListLog(), ListLog()
    trigger._log = trigger_log

    event = _first_event(trigger)
    # Progress appeared while the job ran: the first lines were logged before the job finished.
    streamed = [line for line in trigger_log.lines if line.startswith(f"[{trigger.job_id}] step")]
    assert streamed == [f"[{trigger.job_id}] {line}" for line in lines]
    assert trigger_log.text.index("step 1 ") < trigger_log.text.index("is COMPLETED")
    assert f"[{trigger.job_id}] no newline at the end" in trigger_log.lines
    assert event["stdout_offset"] == len(("\n".join(lines) + "\nno newline at the end").encode())

    monkeypatch.setattr(KubernetesJobStageOperator, "log", property(lambda self: task_log))
    result = _op(deferrable=True).execute_complete(context, event)
    assert result["state"] == "COMPLETED"
    assert any("COMPLETED" in line for line in task_log.lines)  # (the task log is the one checked)
    assert not [line for line in task_log.lines if "step" in line or "no newline" in line]  # nothing twice


def test_streaming_off_leaves_the_whole_log_to_the_resumed_task(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from tests.unit.kubernetes.helpers import ListLog

    monkeypatch.setenv("AIRFLOW__HPCAI__STREAM_LOGS", "False")
    cluster.plan(Outcome("succeed", log="a\nb\n", running_reads=2))
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        _op(deferrable=True).execute(context)
    trigger = deferred.value.trigger
    assert not trigger.stream_logs

    event = _first_event(trigger)
    assert event["stdout_offset"] == 0 and cluster.log_reads == 0
    task_log = ListLog()
    monkeypatch.setattr(KubernetesJobStageOperator, "log", property(lambda self: task_log))
    _op(deferrable=True).execute_complete(context, event)
    assert [line for line in task_log.lines if line.endswith((" a", " b"))] == [
        f"[{trigger.job_id}] a",
        f"[{trigger.job_id}] b",
    ]
