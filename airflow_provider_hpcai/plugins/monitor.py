"""Cluster status for the "HPC Resources" page, gentle on the Slurm controller.

However many browsers poll the page, the controller is asked at most once per ``ttl``
seconds: one cached answer is shared, and each fresh answer adds one point to a bounded
history that the page plots as usage over time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["ClusterMonitor", "ServiceUnavailable", "default_cluster_status", "summarise"]


class ServiceUnavailable(RuntimeError):
    """A backing service (Slurm hook, advisor) is missing or down; the plugin answers 503."""


def default_cluster_status(conn_id: str | None = None) -> dict[str, Any]:
    """Ask the provider's Slurm hook (imported lazily) for nodes, partitions and jobs."""
    try:
        from airflow_provider_hpcai.hooks.slurm import SlurmHook
    except ImportError as err:
        raise ServiceUnavailable(f"the Slurm hook is not installed here ({err})") from None
    if not hasattr(SlurmHook, "cluster_status"):
        raise ServiceUnavailable("this version of the Slurm hook has no cluster_status(); upgrade the provider")
    hook = SlurmHook(conn_id) if conn_id else SlurmHook()
    try:
        return hook.cluster_status()
    except Exception as err:
        raise ServiceUnavailable(f"the Slurm cluster did not answer: {err}") from None
    finally:
        close = getattr(hook, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: S110 - closing is best effort
                pass


def summarise(status: dict[str, Any], at: float) -> dict[str, Any]:
    """One history point: CPU and node usage and job counts from a status answer."""
    # sinfo --Node prints a node once per partition: count each node once.
    nodes = list({str(n.get("name")): n for n in status.get("nodes") or []}.values())
    jobs = status.get("jobs") or []
    states = [str(j.get("state", "")).upper() for j in jobs]
    return {
        "time": at,
        "cpus_allocated": sum(int(n.get("cpus_allocated") or 0) for n in nodes),
        "cpus_total": sum(int(n.get("cpus_total") or 0) for n in nodes),
        "nodes_busy": sum(1 for n in nodes if int(n.get("cpus_allocated") or 0) > 0),
        "nodes_total": len(nodes),
        "jobs_running": sum(1 for s in states if s in ("RUNNING", "COMPLETING")),
        "jobs_pending": sum(1 for s in states if s in ("PENDING", "CONFIGURING", "REQUEUED")),
    }


class ClusterMonitor:
    """Cache of the cluster status with a usage history.

    :param source: ``source(conn_id) -> status dict``; raises :class:`ServiceUnavailable`.
    :param ttl: seconds an answer is reused.
    :param history: how many points to keep (720 points at 10 s: two hours).
    :param clock: time source (tests pass a fake).
    """

    def __init__(
        self,
        source: Callable[[str | None], dict[str, Any]] = default_cluster_status,
        *,
        ttl: float = 10.0,
        history: int = 720,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self.calls = 0
        self._lock = threading.Lock()
        self._cached: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._history: dict[str | None, deque[dict[str, Any]]] = {}
        self._maxlen = history

    def status(self, conn_id: str | None = None) -> dict[str, Any]:
        """The latest status (from cache when younger than ``ttl``) plus its history."""
        with self._lock:
            now = self.clock()
            cached = self._cached.get(conn_id)
            if cached is None or now - cached[0] >= self.ttl:
                self.calls += 1
                answer = self.source(conn_id)
                cached = (now, answer)
                self._cached[conn_id] = cached
                self._history.setdefault(conn_id, deque(maxlen=self._maxlen)).append(summarise(answer, now))
            fetched, answer = cached
            return {
                **answer,
                "fetched_at": fetched,
                "cache_age_s": round(now - fetched, 3),
                "history": list(self._history.get(conn_id, ())),
            }
