"""Classification of Job / MPIJob JSON into the provider's states, and from there its exceptions."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.kubernetes.classify import observe_job, observe_mpijob
from airflow_provider_hpcai.slurm.outcome import build_result, failure_for


def _job(*conditions: tuple[str, str], active: int = 0, deadline: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-01-01T00:00:00Z"}
    if active:
        status["active"] = active
    if conditions:
        status["conditions"] = [
            {"type": t, "status": "True", "reason": r, "message": f"{r} happened"} for t, r in conditions
        ]
        status["completionTime"] = "2026-01-01T00:00:42Z"
    spec = {"activeDeadlineSeconds": deadline} if deadline else {}
    return {"metadata": {"name": "j"}, "spec": spec, "status": status}


def _pod(
    phase: str = "Running",
    *,
    terminated: dict | None = None,
    waiting: dict | None = None,
    reason: str | None = None,
    disruption: str | None = None,
    role: str | None = None,
    container: str = "job",
    scheduled: bool = True,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if terminated is not None:
        state = {"terminated": terminated}
    elif waiting is not None:
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": container,
                "image": "registry.example/app:1",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": state,
            }
        ],
    }
    if reason:
        status.update({"reason": reason, "message": f"{reason} message"})
    conditions = []
    if disruption:
        conditions.append(
            {"type": "DisruptionTarget", "status": "True", "reason": disruption, "message": "m"}
        )
    if not scheduled:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        )
        status.pop("containerStatuses")
    if conditions:
        status["conditions"] = conditions
    labels = {"hpcai.io/role": role} if role else {}
    return {
        "metadata": {"name": f"p-{role or 'job'}", "labels": labels},
        "spec": {"nodeName": "gpu-7"},
        "status": status,
    }


FAILED = ("Failed", "BackoffLimitExceeded")

CASES = [
    # (name, job, pods, expected state, exception raised)
    (
        "success",
        _job(("Complete", "Completed")),
        [_pod("Succeeded", terminated={"exitCode": 0, "reason": "Completed"})],
        "COMPLETED",
        None,
    ),
    (
        "exit code",
        _job(FAILED),
        [_pod("Failed", terminated={"exitCode": 3, "reason": "Error"})],
        "FAILED",
        exc.SlurmJobFailed,
    ),
    (
        "oom",
        _job(FAILED),
        [_pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})],
        "OUT_OF_MEMORY",
        exc.SlurmOutOfMemory,
    ),
    ("deadline", _job(("Failed", "DeadlineExceeded"), deadline=60), [], "TIMEOUT", exc.SlurmJobTimeout),
    (
        "evicted",
        _job(FAILED),
        [_pod("Failed", reason="Evicted", terminated={"exitCode": 137, "reason": "Error"})],
        "PREEMPTED",
        exc.SlurmJobPreempted,
    ),
    (
        "preempted",
        _job(FAILED),
        [_pod("Failed", disruption="PreemptionByScheduler", terminated={"exitCode": 143, "reason": "Error"})],
        "PREEMPTED",
        exc.SlurmJobPreempted,
    ),
    (
        "taint manager",
        _job(FAILED),
        [
            _pod(
                "Failed", disruption="DeletionByTaintManager", terminated={"exitCode": 137, "reason": "Error"}
            )
        ],
        "NODE_FAIL",
        exc.SlurmNodeFailure,
    ),
    ("node lost", _job(FAILED), [_pod("Failed", reason="NodeLost")], "NODE_FAIL", exc.SlurmNodeFailure),
    (
        "image",
        _job(active=1),
        [_pod("Pending", waiting={"reason": "ErrImagePull", "message": "manifest unknown: not found"})],
        "FAILED",
        exc.SlurmJobFailed,
    ),
]


@pytest.mark.parametrize(("job", "pods", "state", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_states_and_the_exceptions_they_raise(job: dict, pods: list, state: str, error: type | None) -> None:
    seen = observe_job(job, pods)
    assert seen.state == state
    result = build_result(
        "j",
        accounting={"state": seen.state, "exit_code": seen.exit_code},
        state=seen.state,
        exit_code=seen.exit_code,
        requested={"memory": 2**30},
        output_tail=seen.reason,
    )
    failure = failure_for(result, seen.reason)
    if error is None:
        assert failure is None and result["exit_code"] == 0
    else:
        assert type(failure) is error
        assert seen.reason  # every failure says what happened


def test_image_pull_message_says_which_image_and_what_to_check() -> None:
    seen = observe_job(
        _job(active=1),
        [_pod("Pending", waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'})],
    )
    assert seen.state == "FAILED" and seen.cleanup
    assert "registry.example/app:1" in seen.reason and "imagePullSecrets" in seen.reason


def test_a_rate_limited_registry_is_waited_out() -> None:
    pod = _pod(
        "Pending", waiting={"reason": "ErrImagePull", "message": "toomanyrequests: pull rate limit exceeded"}
    )
    assert observe_job(_job(active=1), [pod]).state == "PENDING"


def test_missing_secret_is_a_failure_that_names_the_cause() -> None:
    pod = _pod(
        "Pending", waiting={"reason": "CreateContainerConfigError", "message": 'secret "db" not found'}
    )
    seen = observe_job(_job(active=1), [pod])
    assert seen.state == "FAILED" and 'secret "db" not found' in seen.reason


def test_waiting_for_gpus_is_pending_with_the_scheduler_reason() -> None:
    seen = observe_job(_job(active=1), [_pod("Pending", scheduled=False)])
    assert seen.state == "PENDING" and "Insufficient nvidia.com/gpu" in seen.reason


def test_running_reports_the_node_and_success_reports_elapsed_time() -> None:
    assert observe_job(_job(active=1), [_pod()]).node_list == "gpu-7"
    done = observe_job(_job(("Complete", "Completed")), [_pod("Succeeded", terminated={"exitCode": 0})])
    assert done.elapsed_seconds == 42.0 and done.node_list == "gpu-7"


def test_suspended_job_is_still_waiting() -> None:
    job = _job(active=0)
    job["spec"]["suspend"] = True
    assert observe_job(job, []).state == "SUSPENDED"


# ---------------------------------------------------------------------------------- MPIJob
def _mpijob(reason: str | None, kind: str = "Failed") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if reason:
        status["conditions"] = [
            {"type": "Created", "status": "True", "reason": "MPIJobCreated"},
            {"type": kind, "status": "True", "reason": reason, "message": "has failed"},
        ]
    return {"metadata": {"name": "m"}, "spec": {"runPolicy": {"activeDeadlineSeconds": 99}}, "status": status}


def test_mpijob_worker_oom_is_out_of_memory() -> None:
    pods = [
        _pod("Failed", role="launcher", container="launcher", terminated={"exitCode": 1, "reason": "Error"}),
        _pod(
            "Failed", role="worker", container="worker", terminated={"exitCode": 137, "reason": "OOMKilled"}
        ),
    ]
    seen = observe_mpijob(_mpijob("MPIJobFailed"), pods)
    assert seen.state == "OUT_OF_MEMORY" and seen.exit_code == 1  # the launcher's code


@pytest.mark.parametrize(
    ("reason", "state"),
    [("DeadlineExceeded", "TIMEOUT"), ("MPIJobEvicted", "PREEMPTED"), ("MPIJobFailed", "FAILED")],
)
def test_mpijob_conditions(reason: str, state: str) -> None:
    assert observe_mpijob(_mpijob(reason), []).state == state


def test_mpijob_success_and_running() -> None:
    assert observe_mpijob(_mpijob("MPIJobSucceeded", "Succeeded"), []).state == "COMPLETED"
    running = [_pod(role="launcher", container="launcher"), _pod(role="worker", container="worker")]
    assert observe_mpijob(_mpijob(None), running).state == "RUNNING"
