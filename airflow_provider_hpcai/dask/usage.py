"""What a Dask cluster used: its workers' lifetimes, worker-hours, and the fixed cluster it replaced.

:class:`WorkerTimeline` is pure bookkeeping (thread-safe): each worker's join and leave times.
The hook feeds it from a scheduler plugin where the scheduler runs in this process (``local``
and ``slurm`` clusters: exact times) and from the progress thread's polls otherwise. A fixed
cluster sized for the peak would have held ``peak_workers`` for the whole span, so
``fixed_worker_hours = peak_workers * span`` is what adaptive scaling is compared with.

Code running on the cluster (a case study's callable) reads the summary so far with
:func:`usage_of`, through the registry of clusters this process started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["WorkerTimeline", "capacity_of", "format_usage", "register", "scheduler_plugin", "unregister", "usage_of"]


class WorkerTimeline:
    """Join and leave times of every worker of one cluster (names as the scheduler knows them).

    :param clock: seconds (``time.time`` by default; tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, float] = {}
        self._closed: list[tuple[str, float, float]] = []
        self._peak = 0
        self.started_at = clock()
        self.ended_at: float | None = None
        #: Slurm job ids of the cluster's worker jobs, as they were seen.
        self.job_ids: set[str] = set()

    def joined(self, name: str, at: float | None = None) -> None:
        with self._lock:
            if name not in self._open:
                self._open[name] = self._clock() if at is None else at
                self._peak = max(self._peak, len(self._open))

    def left(self, name: str, at: float | None = None) -> None:
        with self._lock:
            start = self._open.pop(name, None)
            if start is not None:
                self._closed.append((name, start, self._clock() if at is None else at))

    def observe(self, names: Iterable[str], at: float | None = None) -> None:
        """Reconcile with the workers a poll saw: new names join, missing ones leave (now)."""
        now = self._clock() if at is None else at
        names = set(names)
        with self._lock:
            gone = [n for n in self._open if n not in names]
        for name in gone:
            self.left(name, now)
        for name in names:
            self.joined(name, now)

    def close(self, at: float | None = None) -> None:
        """Every worker still open leaves; the span ends (idempotent)."""
        now = self._clock() if at is None else at
        with self._lock:
            names = list(self._open)
        for name in names:
            self.left(name, now)
        if self.ended_at is None:
            self.ended_at = now

    def series(self, at: float | None = None) -> list[tuple[float, int]]:
        """Workers running over time: ``(seconds since the cluster started, workers)`` at every change."""
        now = self._clock() if at is None else at
        with self._lock:
            events = [(s, 1) for _, s, _ in self._closed] + [(e, -1) for _, _, e in self._closed]
            events += [(s, 1) for s in self._open.values()]
        out, running = [(0.0, 0)], 0
        for t, step in sorted(events, key=lambda ev: (ev[0], -ev[1])):
            running += step
            out.append((round(max(0.0, t - self.started_at), 3), running))
        out.append((round(max(0.0, now - self.started_at), 3), running))
        return out

    def summary(self, at: float | None = None) -> dict[str, Any]:
        """Worker counts and hours up to ``at`` (now), against a fixed cluster of the peak size.

        ``span_seconds`` runs from the first worker's join to the last one's leave (or now);
        ``saved_fraction`` is ``1 - worker_hours / fixed_worker_hours``.
        """
        now = self._clock() if at is None else at
        with self._lock:
            spans = [(s, e) for _, s, e in self._closed] + [(s, now) for s in self._open.values()]
            workers = len(self._closed) + len(self._open)
            peak, running = self._peak, len(self._open)
            jobs = sorted(self.job_ids, key=lambda j: (len(j), j))
        if spans:
            first = min(s for s, _ in spans)
            last = now if running else max(e for _, e in spans)
            span = max(0.0, last - first)
        else:
            span = 0.0
        seconds = sum(max(0.0, e - s) for s, e in spans)
        fixed = peak * span
        return {
            "workers_started": workers,
            "worker_jobs": len(jobs),
            "job_ids": jobs,
            "peak_workers": peak,
            "running_workers": running,
            "span_seconds": round(span, 3),
            "worker_seconds": round(seconds, 3),
            "worker_hours": round(seconds / 3600.0, 6),
            "fixed_worker_hours": round(fixed / 3600.0, 6),
            "saved_fraction": round(1.0 - seconds / fixed, 4) if fixed > 0 else 0.0,
        }


def format_usage(summary: dict[str, Any]) -> str:
    """``'dask usage: 5 workers (3 Slurm jobs), 0.012 worker-hours; a fixed cluster of the peak (3) for 40s: 0.033 (-64 %)'``."""
    jobs = f" ({summary['worker_jobs']} Slurm jobs)" if summary.get("worker_jobs") else ""
    return (f"dask usage: {summary['workers_started']} worker(s){jobs}, {summary['worker_hours']:.4f} worker-hours; "
            f"a fixed cluster of the peak ({summary['peak_workers']}) for {summary['span_seconds']:.0f}s: "
            f"{summary['fixed_worker_hours']:.4f} ({-100 * summary['saved_fraction']:+.0f} %)")


def scheduler_plugin(timeline: WorkerTimeline) -> Any:
    """A ``distributed`` scheduler plugin that records workers joining and leaving into ``timeline``."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class _TimelinePlugin(SchedulerPlugin):
        name = "hpcai-worker-timeline"

        def __init__(self) -> None:
            self.names: dict[str, str] = {}  # address -> name (gone from scheduler.workers on removal)

        def add_worker(self, scheduler: Any, worker: str) -> None:
            ws = scheduler.workers.get(worker)
            self.names[worker] = name = str(getattr(ws, "name", worker))
            timeline.joined(name)

        def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
            timeline.left(self.names.pop(worker, worker))

    return _TimelinePlugin()


# ---------------------------------------------------------------------------- registry
_lock = threading.Lock()
_active: dict[str, tuple[WorkerTimeline, int | None]] = {}


def register(scheduler_address: str, timeline: WorkerTimeline, max_workers: int | None) -> None:
    """Make a cluster's timeline (and its adaptive ceiling in workers) findable by its scheduler address."""
    with _lock:
        _active[scheduler_address] = (timeline, max_workers)


def unregister(scheduler_address: str | None) -> None:
    with _lock:
        _active.pop(scheduler_address or "", None)


def _lookup(client: Any) -> tuple[WorkerTimeline, int | None] | None:
    try:
        address = client.scheduler.address
    except AttributeError:
        return None
    with _lock:
        return _active.get(address)


def usage_of(client: Any) -> dict[str, Any] | None:
    """The usage summary so far of the cluster behind ``client`` (``None``: not started by this process)."""
    found = _lookup(client)
    return None if found is None else found[0].summary()


def capacity_of(client: Any) -> int:
    """How many workers the cluster may have: its adaptive maximum, else the workers it has now (at least 1)."""
    found = _lookup(client)
    if found is not None and found[1]:
        return int(found[1])
    try:
        return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    except Exception:  # a sizing hint only
        return 1
