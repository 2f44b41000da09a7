"""Which pod's log shows a workload's output (a pure helper of the Kubernetes backend).

A Job's output is the log of its newest pod's ``job`` container; an MPIJob's is its launcher's
(``mpirun`` gathers every rank's output there). The backend serves it as one stream per pod
(``stdout@<pod>``), so a retried pod starts a new count; a log shorter than what was shown (the
kubelet rotated it) starts its count over. What is new is decided by the one output rule of
:mod:`airflow_provider_hpcai.jobs.output`.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.kubernetes.manifests import JOB_CONTAINER, LABEL_ROLE
from airflow_provider_hpcai.kubernetes.mpijob import LAUNCHER_CONTAINER, MPIJOB_KIND

__all__ = ["log_source"]


def log_source(kind: str, pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(pod name, container)`` whose log is the workload's output; ``None`` before any pod exists.

    :param kind: ``"Job"`` or ``"MPIJob"``.
    :param pods: the workload's pods as API JSON.
    """
    if kind == MPIJOB_KIND:
        pods = [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE) == "launcher"]
        container = LAUNCHER_CONTAINER
    else:
        container = JOB_CONTAINER
    if not pods:
        return None
    newest = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return str(newest["metadata"]["name"]), container
