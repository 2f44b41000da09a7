"""What a Job or MPIJob and its pods say about the run, in the provider's (Slurm) state names.

Inputs are API JSON (camelCase dicts, as ``kubectl get -o json`` prints them), so the rules are
pure and tested on recorded shapes. Out come the state names :mod:`~airflow_provider_hpcai.slurm.states`
knows, so :func:`~airflow_provider_hpcai.slurm.outcome.build_result` raises the same exceptions
as on Slurm: ``OOMKilled`` -> ``OUT_OF_MEMORY``, ``DeadlineExceeded`` -> ``TIMEOUT``, eviction
and preemption -> ``PREEMPTED``, a lost node -> ``NODE_FAIL``, an image that cannot be pulled
-> ``FAILED`` with a message saying so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

__all__ = ["DELETED", "Observation", "image_problem", "observe_job", "observe_mpijob", "pod_failure"]

#: A workload that disappeared while a task waited on it was deleted (by a user or Airflow).
DELETED = (
    "CANCELLED",
    "the workload was deleted before it finished (kubectl delete, or Airflow cancelled it)",
)

#: Pod ``status.reason`` values meaning the node went away under the pod.
_NODE_REASONS = {
    "NodeLost",
    "NodeShutdown",
    "Shutdown",
    "Terminated",
    "UnexpectedAdmissionError",
    "NodeAffinity",
}
#: ``DisruptionTarget`` condition reasons (Kubernetes >= 1.26) and what they mean.
_DISRUPTION = {
    "PreemptionByScheduler": "PREEMPTED",
    "PreemptionByKubeScheduler": "PREEMPTED",
    "EvictionByEvictionAPI": "PREEMPTED",
    "TerminationByKubelet": "PREEMPTED",
    "DeletionByTaintManager": "NODE_FAIL",
    "DeletionByPodGC": "NODE_FAIL",
}
#: Waiting reasons that never resolve by themselves.
_CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclasses.dataclass(frozen=True)
class Observation:
    """One look at a workload.

    :param state: a Slurm state name (``PENDING``, ``RUNNING``, ``COMPLETED``, ``OUT_OF_MEMORY``...).
    :param reason: what happened, in words (empty when nothing notable).
    :param exit_code: the main container's exit code once it ended.
    :param node_list: the nodes the pods ran on (comma-separated).
    :param elapsed_seconds: run time from the workload's start to its completion.
    :param cleanup: the workload is stuck for good (bad image): delete it after reporting.
    """

    state: str
    reason: str = ""
    exit_code: int | None = None
    node_list: str | None = None
    elapsed_seconds: float | None = None
    cleanup: bool = False


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conds if str(c.get("status")) == "True"}


def _elapsed(status: Mapping[str, Any]) -> float | None:
    start, end = status.get("startTime"), status.get("completionTime")
    if not start:
        return None
    try:
        begin = datetime.fromisoformat(str(start))
        finish = datetime.fromisoformat(str(end)) if end else None
    except ValueError:
        return None
    if finish is None:
        return None
    return max(0.0, (finish - begin).total_seconds())


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _terminated(container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = container.get("state") or {}
    return state.get("terminated") or (container.get("lastState") or {}).get("terminated")


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def exit_code_of(pods: Iterable[Mapping[str, Any]], container_name: str | None = None) -> int | None:
    """The exit code of the (named) container in the first pod where it ended."""
    for pod in pods:
        for container in _containers(pod):
            if container_name and container.get("name") != container_name:
                continue
            term = _terminated(container)
            if term is not None and term.get("exitCode") is not None:
                return int(term["exitCode"])
    return None


def nodes_of(pods: Iterable[Mapping[str, Any]]) -> str | None:
    names = sorted({str(p["spec"]["nodeName"]) for p in pods if (p.get("spec") or {}).get("nodeName")})
    return ",".join(names) or None


def pod_failure(pods: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """Why pods failed, most specific first: OOM kill, preemption/eviction, lost node, deadline."""
    found: list[tuple[int, str, str]] = []
    for pod in pods:
        status = pod.get("status") or {}
        name = _pod_name(pod)
        for container in _containers(pod):
            term = _terminated(container)
            if term is not None and term.get("reason") == "OOMKilled":
                found.append(
                    (
                        0,
                        "OUT_OF_MEMORY",
                        f"container {container.get('name')} of pod {name} was OOMKilled: it used more "
                        + "memory than its limit",
                    )
                )
        for cond in status.get("conditions") or []:
            if cond.get("type") == "DisruptionTarget" and str(cond.get("status")) == "True":
                state = _DISRUPTION.get(str(cond.get("reason")), "PREEMPTED")
                found.append(
                    (1, state, f"pod {name} was disrupted ({cond.get('reason')}): {cond.get('message', '')}")
                )
        reason = status.get("reason")
        if reason == "Evicted":
            found.append((1, "PREEMPTED", f"pod {name} was evicted: {status.get('message', '')}"))
        elif reason == "Preempting":
            found.append((1, "PREEMPTED", f"pod {name} was preempted: {status.get('message', '')}"))
        elif reason in _NODE_REASONS:
            found.append(
                (2, "NODE_FAIL", f"pod {name} lost its node ({reason}): {status.get('message', '')}")
            )
        elif reason == "DeadlineExceeded":
            found.append((3, "TIMEOUT", f"pod {name} ran past its deadline"))
    if not found:
        return None
    _, state, text = min(found, key=lambda item: item[0])
    return state, text.strip().rstrip(":")


def image_problem(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """A message when a pod can never start (bad image, missing config), else ``None``.

    Image pulls are judged by the cncf provider's own rule (``detect_pod_terminate_early_issues``),
    which tells a missing image from a registry that is only rate limiting or briefly down.
    """
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("kubernetes", "airflow.providers.cncf.kubernetes.utils.pod_manager")
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from airflow.providers.cncf.kubernetes.utils.pod_manager import detect_pod_terminate_early_issues

    for pod in pods:
        for container in _containers(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _CONFIG_ERRORS:
                return (
                    f"pod {_pod_name(pod)} cannot start ({waiting.get('reason')}): "
                    f"{waiting.get('message', '')}; "
                    "check the Secrets/ConfigMaps and the command it refers to"
                )
        if not _containers(pod):
            continue
        statuses = [
            {
                "name": c.get("name") or "?",
                "image": c.get("image") or "",
                "imageID": c.get("imageID") or "",
                "ready": bool(c.get("ready")),
                "restartCount": int(c.get("restartCount") or 0),
                "state": c.get("state") or {},
            }
            for c in _containers(pod)
        ]
        message = detect_pod_terminate_early_issues(
            PodGenerator.deserialize_model_dict({"status": {"containerStatuses": statuses}})
        )
        if message:
            images = ", ".join(str(c.get("image")) for c in _containers(pod))
            return (
                f"pod {_pod_name(pod)}: {message.strip()} (image {images}). Check the image name and tag, "
                "and that the namespace has imagePullSecrets for a private registry"
            )
    return None


def _active(pods: list[Mapping[str, Any]], suspended: bool) -> Observation:
    if suspended:
        return Observation("SUSPENDED", "the workload is suspended")
    problem = image_problem(pods)
    if problem:
        return Observation("FAILED", problem, cleanup=True)
    phases = [str((p.get("status") or {}).get("phase", "Pending")) for p in pods]
    if pods and all(phase == "Running" for phase in phases):
        return Observation("RUNNING", node_list=nodes_of(pods))
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and str(cond.get("status")) == "False":
                return Observation(
                    "PENDING", f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}"
                )
    if "Running" in phases:
        return Observation("RUNNING", node_list=nodes_of(pods))
    return Observation("PENDING")


def observe_job(job: Mapping[str, Any], pods: list[Mapping[str, Any]], container: str = "job") -> Observation:
    """Classify a batch/v1 Job (``backoffLimit: 0``, one pod) from the Job and its pods."""
    status = job.get("status") or {}
    conds = _conditions(job)
    nodes, code = nodes_of(pods), exit_code_of(pods, container)
    elapsed = _elapsed(status)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return Observation("COMPLETED", "", 0 if code is None else code, nodes, elapsed)
    failed = conds.get("Failed") or conds.get("FailureTarget")
    if failed is not None:
        if failed.get("reason") == "DeadlineExceeded":
            limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
            return Observation(
                "TIMEOUT",
                f"the Job ran past its time limit ({limit}s activeDeadlineSeconds)",
                code,
                nodes,
                elapsed,
            )
        by_pod = pod_failure(pods)
        if by_pod is not None:
            return Observation(by_pod[0], by_pod[1], code, nodes, elapsed)
        text = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip().rstrip(":")
        return Observation("FAILED", text, code, nodes, elapsed)
    by_pod = pod_failure(pods)
    if by_pod is not None and by_pod[0] in ("NODE_FAIL", "PREEMPTED") and status.get("failed"):
        return Observation(by_pod[0], by_pod[1], code, nodes, elapsed)
    return _active(pods, bool((job.get("spec") or {}).get("suspend")))


def observe_mpijob(mpijob: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> Observation:
    """Classify a Kubeflow MPIJob from its conditions and its launcher's and workers' pods."""
    from airflow_provider_hpcai.kubernetes.manifests import LABEL_ROLE

    status = mpijob.get("status") or {}
    conds = _conditions(mpijob)
    launchers = [
        p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE) == "launcher"
    ]
    nodes, code = nodes_of(pods), exit_code_of(launchers, "launcher")
    elapsed = _elapsed(status)
    if "Succeeded" in conds:
        return Observation("COMPLETED", "", 0 if code is None else code, nodes, elapsed)
    failed = conds.get("Failed")
    if failed is not None:
        reason = str(failed.get("reason") or "")
        by_pod = pod_failure(pods)
        if by_pod is not None and by_pod[0] == "OUT_OF_MEMORY":
            return Observation(by_pod[0], by_pod[1], code, nodes, elapsed)
        if "DeadlineExceeded" in reason:
            limit = ((mpijob.get("spec") or {}).get("runPolicy") or {}).get("activeDeadlineSeconds")
            return Observation(
                "TIMEOUT", f"the MPIJob ran past its time limit ({limit}s)", code, nodes, elapsed
            )
        if by_pod is not None:
            return Observation(by_pod[0], by_pod[1], code, nodes, elapsed)
        if "Evict" in reason:
            return Observation("PREEMPTED", f"{reason}: {failed.get('message', '')}", code, nodes, elapsed)
        return Observation(
            "FAILED",
            f"{reason or 'Failed'}: {failed.get('message', '')}".strip().rstrip(":"),
            code,
            nodes,
            elapsed,
        )
    suspended = bool(((mpijob.get("spec") or {}).get("runPolicy") or {}).get("suspend"))
    return _active(pods, suspended)
