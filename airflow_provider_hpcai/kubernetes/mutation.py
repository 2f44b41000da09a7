"""Apply a resource-advisor decision to a pod (Airflow's ``pod_mutation_hook``).

The advisor's decision (``{"applied": {"memory": bytes, "time_limit": seconds, "cpus_per_task": n,
"ntasks": n, "gpus": n}, ...}``) travels to the pod as JSON in the :data:`DECISION_ANNOTATION`
annotation; :func:`pod_mutation_hook` reads it and rewrites the main container's requests and
limits and the pod's ``activeDeadlineSeconds``. Use it from ``airflow_local_settings.py``::

    from airflow_provider_hpcai.kubernetes.mutation import pod_mutation_hook  # noqa: F401

or call :func:`apply_advisor_decision` directly with a decision you hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["DECISION_ANNOTATION", "apply_advisor_decision", "main_container", "pod_mutation_hook"]

log = logging.getLogger(__name__)

DECISION_ANNOTATION = "hpcai.io/advisor-decision"
#: Names of the container that runs the work, by who made the pod (KubernetesPodOperator, this provider).
_MAIN_NAMES = ("base", "job", "launcher", "worker")
_SIDECARS = {"airflow-xcom-sidecar"}
_GPU = "nvidia.com/gpu"


def main_container(pod: Any) -> Any | None:
    """The container doing the work: a known main name first, else the first that is not a sidecar."""
    containers = list(getattr(getattr(pod, "spec", None), "containers", None) or [])
    for name in _MAIN_NAMES:
        for container in containers:
            if container.name == name:
                return container
    return next((c for c in containers if c.name not in _SIDECARS), None)


def _quantity(num_bytes: int) -> str:
    from airflow_provider_hpcai.kubernetes.manifests import format_quantity

    return format_quantity(int(num_bytes))


def _positive(applied: Mapping[str, Any], key: str) -> int | None:
    value = applied.get(key)
    if value is None or isinstance(value, bool):
        return None
    number = int(value)
    if number <= 0:
        raise ValueError(f"advisor decision {key}={value!r} must be positive")
    return number


def apply_advisor_decision(pod: Any, decision: Mapping[str, Any]) -> Any:
    """Rewrite ``pod`` (a ``V1Pod``) in place from ``decision["applied"]``; return it.

    Memory sets the request and the limit (a container above it is OOMKilled, as on Slurm);
    CPUs (``cpus_per_task * ntasks``) set the request and, when one exists, the limit; GPUs set
    ``nvidia.com/gpu``; ``time_limit`` sets ``spec.activeDeadlineSeconds``. Keys absent from the
    decision leave the pod as it was.
    """
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("kubernetes", "kubernetes.client")
    from kubernetes.client import models as k8s

    applied = decision.get("applied") or {}
    if not isinstance(applied, Mapping):
        raise ValueError("advisor decision 'applied' must be a mapping")
    # Read and check everything first: a bad decision must not leave the pod half-changed.
    memory = _positive(applied, "memory")
    cpus_per_task, ntasks = _positive(applied, "cpus_per_task"), _positive(applied, "ntasks")
    time_limit = _positive(applied, "time_limit")
    gpus = applied.get("gpus")
    gpu_count = None if gpus is None or isinstance(gpus, bool) else int(str(gpus).rpartition(":")[2])
    container = main_container(pod)
    if container is None:
        return pod
    if container.resources is None:
        container.resources = k8s.V1ResourceRequirements()
    requests = dict(container.resources.requests or {})
    limits = dict(container.resources.limits or {})
    if memory is not None:
        requests["memory"] = limits["memory"] = _quantity(memory)
    if cpus_per_task is not None or ntasks is not None:
        cpus = (cpus_per_task or 1) * (ntasks or 1)
        requests["cpu"] = str(cpus)
        if "cpu" in limits:
            limits["cpu"] = str(cpus)
    if gpu_count:
        requests[_GPU] = limits[_GPU] = str(gpu_count)
    elif gpu_count == 0:
        requests.pop(_GPU, None)
        limits.pop(_GPU, None)
    container.resources.requests = requests or None
    container.resources.limits = limits or None
    if time_limit is not None and pod.spec is not None:
        pod.spec.active_deadline_seconds = time_limit
    return pod


def pod_mutation_hook(pod: Any) -> None:
    """Airflow's cluster-wide pod hook: apply the decision in the pod's annotation, if any.

    Never raises: a malformed decision is logged and the pod is left as it was.
    """
    try:
        annotations = (getattr(pod.metadata, "annotations", None) or {}) if pod.metadata else {}
        raw = annotations.get(DECISION_ANNOTATION)
        if not raw:
            return
        apply_advisor_decision(pod, json.loads(raw))
    except Exception as err:  # the hook runs for every pod Airflow launches: never break them
        log.warning("Ignoring the advisor decision on pod %s: %s", getattr(pod.metadata, "name", "?"), err)
