"""Which pod's log shows a workload's output, and what of it is new: pure helpers shared by the
Kubernetes backend (blocking wait) and :class:`~airflow_provider_hpcai.triggers.kubernetes.KubernetesWorkloadTrigger`
(deferred wait), so both copy each line into the task log exactly once.

A Job's output is the log of its newest pod's ``job`` container; an MPIJob's is its launcher's
(``mpirun`` gathers every rank's output there). Progress is a byte count of that pod's log. The
count starts over when the pod changes (a retried pod) and when the log got shorter than what was
already shown (the kubelet rotated it: the API serves the current file only).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.kubernetes.manifests import JOB_CONTAINER, LABEL_ROLE
from airflow_provider_hpcai.kubernetes.mpijob import LAUNCHER_CONTAINER, MPIJOB_KIND

__all__ = ["LogCursor", "log_delta", "log_source", "new_lines"]


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


class LogCursor:
    """How much of which pod's log was shown already (JSON-safe through :meth:`to_dict`).

    :param pod: the pod whose log ``shown`` counts; "" means whichever pod is read next (a count
        handed over without a pod name, as the trigger's event does).
    :param shown: bytes of that log already copied into the task log.
    """

    def __init__(self, pod: str = "", shown: int = 0) -> None:
        self.pod = pod
        self.shown = int(shown)

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "shown": self.shown}

    def offset_for(self, pod: str | None) -> int:
        """Bytes of ``pod``'s log already shown (0 for any other pod)."""
        return self.shown if pod and pod == self.pod else 0


def log_delta(cursor: LogCursor, pod: str, data: bytes, final: bool = False) -> tuple[list[str], str | None]:
    """Advance ``cursor`` over ``pod``'s whole log ``data``: the new lines, and a note.

    A trailing partial line waits for its newline unless ``final`` (the workload ended).
    The note says why the count started over (another pod, or a rotated log), else ``None``.
    """
    note = None
    if cursor.pod and pod != cursor.pod:
        note = f"output now comes from pod {pod} (was {cursor.pod})"
        cursor.shown = 0
    cursor.pod = pod
    if len(data) < cursor.shown:
        note = f"the log of pod {pod} was rotated; showing it from its current start"
        cursor.shown = 0
    fresh = data[cursor.shown :]
    cut = len(fresh) if final else fresh.rfind(b"\n") + 1
    cursor.shown += cut
    return fresh[:cut].decode("utf-8", "replace").splitlines(), note


def new_lines(cursor: LogCursor, pod: str, data: bytes, final: bool = False) -> list[str]:
    """What to show of ``pod``'s log ``data`` now: the note (if the count started over), then the new lines."""
    lines, note = log_delta(cursor, pod, data, final=final)
    return [note, *lines] if note else lines
