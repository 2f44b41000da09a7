"""The deferrable wait on a Kubernetes Job or Kubeflow MPIJob under its earlier name.

:class:`KubernetesWorkloadTrigger` is the one :class:`~airflow_provider_hpcai.triggers.job.JobTrigger`
built from the arguments of earlier versions (a trigger stored before an upgrade); it
serializes as a ``JobTrigger``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.triggers.job import JobTrigger

__all__ = ["KubernetesWorkloadTrigger"]


class KubernetesWorkloadTrigger(JobTrigger):
    """Wait for a Job or MPIJob to finish.

    :param name: the workload's name.
    :param namespace: its namespace.
    :param kind: ``"Job"`` or ``"MPIJob"``.
    :param kubernetes_conn_id: the cncf ``kubernetes`` connection.
    :param poll_interval: seconds between polls while the state changes.
    :param max_poll_interval: the longest backoff while nothing changes.
    :param outage_budget: seconds of API errors tolerated before the wait fails with an error event.
    :param stream_logs: copy the workload's output into the task log while it runs.
    :param log_cursor: how much of which pod's log was shown (``{"pod", "shown"}``).
    :param echo: JSON-safe data handed back unchanged in the event (the operator's job reference).
    """

    def __init__(
        self,
        name: str,
        namespace: str = "default",
        kind: str = "Job",
        kubernetes_conn_id: str = "kubernetes_default",
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        outage_budget: float = 600.0,
        stream_logs: bool = False,
        log_cursor: dict[str, Any] | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        cursor = log_cursor or {}
        shown = int(cursor.get("shown") or 0)
        stream = f"stdout@{cursor['pod']}" if cursor.get("pod") else "stdout"
        ref = {"backend": "kubernetes", "job_id": name,
               "extra": {"namespace": namespace, "kind": kind, "conn_id": kubernetes_conn_id}}
        super().__init__(ref=ref, conn_id=kubernetes_conn_id, poll_interval=poll_interval,
                         max_poll_interval=max_poll_interval, outage_budget=outage_budget, stream_logs=stream_logs,
                         resume={"offsets": {stream: shown} if shown else {}}, echo=echo)
