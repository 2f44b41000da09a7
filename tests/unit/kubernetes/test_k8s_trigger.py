"""KubernetesWorkloadTrigger through the real AsyncKubernetesHook, against the fake API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from airflow_provider_hpcai.backends.kubernetes import KubernetesBackend
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from airflow_provider_hpcai.triggers.job import JobTrigger
from airflow_provider_hpcai.triggers.kubernetes import KubernetesWorkloadTrigger
from tests.unit.kubernetes.fake_k8s import FakeCluster, Outcome

TAG = make_tag("dag", "stage", "run-1")


def _collect(trigger: KubernetesWorkloadTrigger, limit: int = 5) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        events = []
        async for event in trigger.run():
            events.append(event.payload)
            if len(events) >= limit:
                break
        return events

    return asyncio.run(asyncio.wait_for(go(), timeout=20))


def _submit(nodes: int = 1) -> Any:
    spec = JobSpec(
        name="dag.stage", script="echo hi", tag=TAG, resources=Resources(nodes=nodes, ntasks=nodes)
    )
    backend = KubernetesBackend()
    ref = backend.submit(spec)
    return backend, ref


def test_serialize_round_trip(cluster: FakeCluster) -> None:
    backend, ref = _submit()
    trigger = JobTrigger.for_job(backend, ref, poll_interval=5, echo={"ref": ref.to_dict()})
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_hpcai.triggers.job.JobTrigger"
    rebuilt = JobTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    extra = kwargs["ref"]["extra"]
    assert extra["namespace"] == "hpc" and extra["kind"] == "Job" and kwargs["ref"]["job_id"] == ref.job_id
    assert all(isinstance(v, (str, int, float, dict)) for v in kwargs.values())
    # a trigger stored by an earlier version is rebuilt into the same one
    legacy = KubernetesWorkloadTrigger(ref.job_id, "hpc", log_cursor={"pod": "p", "shown": 7})
    assert legacy.serialize()[1]["ref"]["extra"]["namespace"] == "hpc"
    assert legacy.serialize()[1]["resume"] == {"offsets": {"stdout@p": 7}}


@pytest.mark.parametrize(
    ("outcome", "status", "state"),
    [
        ("succeed", "success", "COMPLETED"),
        ("oom", "failed", "OUT_OF_MEMORY"),
        ("deadline", "failed", "TIMEOUT"),
        ("image_pull", "failed", "FAILED"),
    ],
)
def test_one_event_with_what_the_operator_needs(
    cluster: FakeCluster, outcome: str, status: str, state: str
) -> None:
    cluster.plan(Outcome(outcome, running_reads=3))
    backend, ref = _submit()
    echo = {"ref": ref.to_dict(), "requested": {"memory": None}}
    events = _collect(JobTrigger.for_job(backend, ref, poll_interval=0, echo=echo))
    assert len(events) == 1
    event = events[0]
    assert (event["status"], event["state"], event["job_id"]) == (status, state, ref.job_id)
    assert event["echo"] == echo
    assert "exit_code" in event


def test_mpijob_is_watched_through_the_custom_object_api(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("succeed"))
    backend, ref = _submit(nodes=2)
    (event,) = _collect(JobTrigger.for_job(backend, ref, poll_interval=0))
    assert event["status"] == "success" and event["state"] == "COMPLETED"


def test_a_deleted_job_ends_the_wait_as_cancelled(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("hang"))
    backend, ref = _submit()
    backend.cancel(ref)
    (event,) = _collect(JobTrigger.for_job(backend, ref, poll_interval=0))
    assert event["state"] == "CANCELLED" and "deleted" in event["reason"]


def test_api_outage_is_waited_out_then_reported(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("succeed"))
    backend, ref = _submit()
    # (pod listings: status reads are retried inside the cncf hook first, with waits of seconds)
    cluster.pod_errors.extend(ApiException(status=503, reason="unavailable") for _ in range(3))
    (event,) = _collect(JobTrigger.for_job(backend, ref, poll_interval=0))
    assert event["status"] == "success"  # three failed reads, then the answer
    assert not cluster.pod_errors

    cluster.plan(Outcome("hang"))
    _, ref2 = _submit()
    cluster.pod_errors.extend(ApiException(status=503, reason="unavailable") for _ in range(100000))
    trigger = KubernetesWorkloadTrigger(ref2.job_id, "hpc", poll_interval=0.001, outage_budget=0.05)
    (event,) = _collect(trigger)
    assert event["status"] == "error" and event["error_type"] == "controller_unavailable"


def test_run_never_raises(cluster: FakeCluster) -> None:
    cluster.errors.append(ApiException(status=403, reason="Forbidden: cannot get jobs"))
    (event,) = _collect(KubernetesWorkloadTrigger("whatever", "hpc", poll_interval=0, echo={"k": 1}))
    assert event["status"] == "error" and "Forbidden" in event["message"] and event["echo"] == {"k": 1}


@pytest.mark.parametrize("nodes", [1, 2])
def test_on_kill_deletes_the_workload(cluster: FakeCluster, nodes: int) -> None:
    cluster.plan(Outcome("hang"))
    backend, ref = _submit(nodes)
    trigger = JobTrigger.for_job(backend, ref, poll_interval=0)
    asyncio.run(trigger.on_kill())
    assert cluster.deleted == [(ref.extra["kind"], "hpc", ref.job_id)] and not cluster.pods
    asyncio.run(trigger.on_kill())  # already gone: no error


def test_the_log_is_shown_by_the_one_rule_and_starts_over_on_a_new_pod_or_rotation(cluster: FakeCluster) -> None:
    """Whole lines once; a new pod (the Job's retry) or a rotated log starts the count over."""
    import copy

    from airflow_provider_hpcai.jobs.output import ResumeState
    from airflow_provider_hpcai.jobs.watch import BlockingAccess, copy_output, run_sync
    from tests.unit.kubernetes.helpers import ListLog

    cluster.plan(Outcome("hang", log="a\n"))
    backend, ref = _submit()
    for _ in range(3):
        backend.status(ref)  # running
    work = cluster.workload(ref.job_id)
    first = work.pods[0]
    resume, log = ResumeState(), ListLog()

    def show(data: bytes, pod: str = first) -> list[str]:
        cluster.logs[("hpc", pod)] = data
        before = len(log.lines)
        run_sync(copy_output(BlockingAccess(backend), ref, resume, log, final=False))
        return log.lines[before:]

    assert show(b"a\nb") == [f"[{ref.job_id}] a"]  # "b" waits for its newline
    assert show(b"a\nb\nc\n") == [f"[{ref.job_id}] b", f"[{ref.job_id}] c"]
    assert show(b"a\nb\nc\n") == []
    rotated = f"[{ref.job_id}] stdout@{first} started over (rotated); showing it from its current start"
    assert show(b"x\n") == [rotated, f"[{ref.job_id}] x"]  # shorter than shown: the kubelet rotated it
    assert show(b"x\n\xff\xfebad\n")[-1] == f"[{ref.job_id}] \ufffd\ufffdbad"  # never raises on bytes
    retry = copy.deepcopy(cluster.pods[("hpc", first)])
    retry["metadata"].update(name=f"{first}-2", creationTimestamp="2027-01-01T00:00:00Z")
    cluster.pods[("hpc", f"{first}-2")] = retry
    lines = show(b"retry\n", f"{first}-2")  # the Job's next pod
    assert lines == [f"[{ref.job_id}] output now comes from {first}-2 (was {first})", f"[{ref.job_id}] retry"]


def test_a_recreated_trigger_goes_on_where_the_last_one_stopped(cluster: FakeCluster) -> None:
    from tests.unit.kubernetes.helpers import ListLog

    cluster.plan(Outcome("succeed", log="one\ntwo\nthree\n", running_reads=3))
    backend, ref = _submit()
    first = JobTrigger.for_job(backend, ref, poll_interval=0)
    first._log = ListLog()

    async def until_some_shown(trigger: JobTrigger) -> None:
        task = asyncio.ensure_future(trigger.run().__anext__())
        while not any(trigger.resume.offsets.values()) and not task.done():
            await asyncio.sleep(0.001)
        assert not task.done(), "the job ended before any of its log was streamed"
        task.cancel()  # the triggerer dies here

    asyncio.run(asyncio.wait_for(until_some_shown(first), timeout=10))
    _, kwargs = first.serialize()  # the triggerer restarts: the trigger is rebuilt from this
    assert sum(kwargs["resume"]["offsets"].values()) > 0
    second = JobTrigger(**kwargs)
    second._log = ListLog()
    (event,) = _collect(second)
    shown = [line.split("] ", 1)[1] for line in first._log.lines + second._log.lines if line.endswith(("one", "two", "three"))]
    assert shown == ["one", "two", "three"]
    assert event["stdout_offset"] == len(b"one\ntwo\nthree\n")


def test_unreadable_logs_never_fail_the_wait_and_warn_once(cluster: FakeCluster) -> None:
    from tests.unit.kubernetes.helpers import ListLog

    cluster.plan(Outcome("succeed", running_reads=3))
    backend, ref = _submit()
    cluster.log_errors.extend(ApiException(status=403, reason="Forbidden: pods/log") for _ in range(100))
    trigger = JobTrigger.for_job(backend, ref, poll_interval=0)
    trigger._log = ListLog()
    (event,) = _collect(trigger)
    assert event["status"] == "success" and event["stdout_offset"] == 0  # the task shows the log itself
    assert sum("Could not read the log" in line for line in trigger._log.lines) == 1


def test_many_waiting_triggers_share_one_listing_per_poll(cluster: FakeCluster) -> None:
    """N deferred Kubernetes tasks cost one workload listing (by label selector) per poll, not N reads."""
    from airflow_provider_hpcai.jobs.poller import reset_pollers

    reset_pollers()
    cluster.plan(*[Outcome("succeed", running_reads=2) for _ in range(6)])
    submitted = [_submit() for _ in range(6)]
    reads_before = cluster.status_reads
    triggers = [JobTrigger.for_job(backend, ref, poll_interval=0.001) for backend, ref in submitted]
    for trigger in triggers:
        trigger.stream_logs = False

    async def main() -> list[dict[str, Any]]:
        async def first(trigger: JobTrigger) -> dict[str, Any]:
            return (await trigger.run().__anext__()).payload

        return await asyncio.gather(*(first(t) for t in triggers))

    events = asyncio.run(asyncio.wait_for(main(), timeout=20))
    reset_pollers()
    assert [e["status"] for e in events] == ["success"] * 6
    assert cluster.status_reads == reads_before  # no workload read one by one
    assert cluster.status_lists <= 6  # a handful of polls for all six, one listing each
