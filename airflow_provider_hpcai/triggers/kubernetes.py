"""The deferrable wait on a Kubernetes Job or Kubeflow MPIJob.

The trigger polls the workload and its pods through the cncf provider's
:class:`AsyncKubernetesHook` (with backoff while nothing changes), classifies them with the same
rules as the backend, copies the output pod's new log lines into the task log as they appear
(``stream_logs``), and fires one event whose ``stdout_offset`` tells the operator how much of the
log was shown already. Its ``serialize()`` mirrors ``__init__`` with primitives
only; the hook is rebuilt from the connection id in the triggerer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hpcai.kubernetes.logs import LogCursor, log_source, new_lines

__all__ = ["KubernetesWorkloadTrigger"]

#: Statuses of API errors worth waiting out (the API server restarting, throttling).
_TRANSIENT = {408, 429, 500, 502, 503, 504}


class KubernetesWorkloadTrigger(BaseTrigger):
    """Wait for a Job or MPIJob to finish.

    :param name: the workload's name.
    :param namespace: its namespace.
    :param kind: ``"Job"`` or ``"MPIJob"``.
    :param kubernetes_conn_id: the cncf ``kubernetes`` connection.
    :param poll_interval: seconds between polls while the state changes.
    :param max_poll_interval: the longest backoff while nothing changes.
    :param outage_budget: seconds of API errors tolerated before the wait fails with an error event.
    :param stream_logs: copy the workload's output into the task log while it runs.
    :param log_cursor: how much of which pod's log was shown (a re-created trigger goes on from there).
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
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kind = kind
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.outage_budget = float(outage_budget)
        self.stream_logs = bool(stream_logs)
        self.cursor = LogCursor(**(log_cursor or {}))
        self._log_warned = False
        self.echo = echo or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kind": self.kind,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "outage_budget": self.outage_budget,
                "stream_logs": self.stream_logs,
                "log_cursor": self.cursor.to_dict(),
                "echo": self.echo,
            },
        )

    def _hook(self) -> Any:
        from airflow_provider_hpcai.kubernetes.hooks import AsyncKubernetesWorkloadHook

        return AsyncKubernetesWorkloadHook(conn_id=self.kubernetes_conn_id)

    async def _observe(self, hook: Any) -> tuple[Any, list[dict[str, Any]]]:
        from airflow_provider_hpcai.backends.kubernetes import observe

        workload = await hook.read_workload(self.kind, self.name, self.namespace)
        pods = await hook.list_workload_pods(self.name, self.namespace) if workload is not None else []
        return observe(self.kind, workload, pods), pods

    async def _copy_logs(self, hook: Any, pods: list[dict[str, Any]], final: bool) -> str | None:
        """Log what the output pod's log gained since the cursor; return that pod's name."""
        where = log_source(self.kind, pods)
        if where is None:
            return None
        try:
            data = await hook.read_pod_log(where[0], where[1], self.namespace)
        except Exception as err:  # logs are a convenience: never fail the wait for them
            if not self._log_warned:
                self.log.warning("Could not read the log of %s (will keep trying): %s", where[0], err)
                self._log_warned = True
            return where[0]
        for line in new_lines(self.cursor, where[0], data, final=final):
            self.log.info("[%s] %s", self.name, line)
        return where[0]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_hpcai.slurm.states import JobStatus, Phase

        try:
            hook = self._hook()
            interval, last, outage_since = self.poll_interval, None, None
            while True:
                try:
                    seen, pods = await self._observe(hook)
                    outage_since = None
                except Exception as err:
                    if getattr(err, "status", None) not in _TRANSIENT and not isinstance(
                        err, (OSError, TimeoutError)
                    ):
                        raise
                    outage_since = outage_since or time.monotonic()
                    if time.monotonic() - outage_since > self.outage_budget:
                        yield TriggerEvent(
                            self._error(
                                f"the Kubernetes API stayed unreachable for {self.outage_budget:.0f}s: {err}",
                                "controller_unavailable",
                            )
                        )
                        return
                    self.log.warning(
                        "Kubernetes API error while waiting on %s (retrying): %s", self.name, err
                    )
                    await asyncio.sleep(interval)
                    continue
                if (seen.state, seen.reason) != last:
                    self.log.info(
                        "Kubernetes %s %s is %s%s",
                        self.kind,
                        self.name,
                        seen.state,
                        f" ({seen.reason})" if seen.reason else "",
                    )
                    last, interval = (seen.state, seen.reason), self.poll_interval
                phase = JobStatus(self.name, seen.state).phase
                shown_pod = await self._copy_logs(hook, pods, final=phase is not Phase.ACTIVE) \
                    if self.stream_logs else None
                if phase is not Phase.ACTIVE:
                    outcome = "success" if phase is Phase.SUCCEEDED else "failed"
                    yield TriggerEvent(
                        {
                            "status": outcome,
                            "job_id": self.name,
                            "state": seen.state,
                            "exit_code": seen.exit_code,
                            "reason": seen.reason,
                            "stdout_offset": self.cursor.offset_for(shown_pod),
                            "stderr_offset": 0,
                            "echo": self.echo,
                        }
                    )
                    return
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, max(self.poll_interval, self.max_poll_interval))
        except Exception as err:  # never let an exception escape run()
            self.log.exception("Waiting on Kubernetes %s %s failed", self.kind, self.name)
            yield TriggerEvent(self._error(f"{type(err).__name__}: {err}", "trigger_error"))

    def _error(self, message: str, error_type: str) -> dict[str, Any]:
        return {
            "status": "error",
            "job_id": self.name,
            "message": message,
            "error_type": error_type,
            "stdout_offset": 0,
            "stderr_offset": 0,
            "echo": self.echo,
        }

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear): delete the workload and its pods."""
        deleted = await self._hook().delete_workload(self.kind, self.name, self.namespace)
        self.log.info(
            "%s Kubernetes %s %s because the task was killed",
            "Deleted" if deleted else "Already gone:",
            self.kind,
            self.name,
        )
