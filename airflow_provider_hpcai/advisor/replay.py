"""An event-driven EASY-backfilling replay of a trace.

Jobs are queued first come, first served. When the head of the queue does not fit, it gets
a reservation at the *shadow time* (when enough running jobs are expected to have ended,
by their estimates); later jobs may start now if they fit and either end, by their estimate,
before the shadow time or use only processors the head will not need.

Each job has a *limit* (it is killed when it runs longer) and an *estimate* (what the
scheduler plans with; normally equal to the limit). A job whose estimate has passed while it
still runs is planned to end at its limit (Tsafrir's correction). A killed job is
resubmitted at once with ``retry_limit`` (the user's request) as limit and estimate, and is
charged from its first submission.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Any

__all__ = ["ReplayResult", "bounded_slowdown", "easy_backfill"]


@dataclasses.dataclass
class ReplayResult:
    """Per-job outcome: first and last start, end, and whether the first attempt was killed."""

    start: Any
    end: Any
    killed: Any

    def response(self, submit: Any) -> Any:
        return self.end - submit


def bounded_slowdown(response: Any, run: Any, tau: float = 10.0) -> Any:
    """``max(1, response / max(run, tau))`` per job."""
    import numpy as np

    return np.maximum(1.0, response / np.maximum(run, tau))


def easy_backfill(
    submit: Any,
    procs: Any,
    run: Any,
    limit: Any,
    estimate: Any,
    capacity: int,
    retry_limit: Any,
    backfill_order: str = "fcfs",
) -> ReplayResult:
    """Replay jobs on a machine of ``capacity`` processors under EASY backfilling.

    :param submit: submission times (any order).
    :param procs: processors per job (clipped to ``capacity``).
    :param run: actual run times.
    :param limit: kill limits of the first attempt.
    :param estimate: what the scheduler plans with on the first attempt.
    :param capacity: processors in the machine.
    :param retry_limit: limit (and estimate) of the resubmission after a kill.
    :param backfill_order: ``fcfs`` (EASY: backfill candidates in queue order) or ``sjf``
        (EASY++, Tsafrir et al. 2007: shortest *estimate* first; the head's reservation is kept).
    """
    if backfill_order not in ("fcfs", "sjf"):
        raise ValueError(f"backfill_order must be 'fcfs' or 'sjf', not {backfill_order!r}")
    sjf = backfill_order == "sjf"
    import numpy as np

    n = len(submit)
    sub = np.asarray(submit, dtype=float).tolist()
    size = np.minimum(np.asarray(procs, dtype=np.int64), capacity).tolist()
    runs = np.asarray(run, dtype=float).tolist()
    lim0 = np.asarray(limit, dtype=float).tolist()
    est0 = np.asarray(estimate, dtype=float).tolist()
    lim1 = np.asarray(retry_limit, dtype=float).tolist()
    start = [0.0] * n
    end = [0.0] * n
    killed = [False] * n
    attempt = [0] * n

    events: list[tuple[float, int, int]] = [(sub[j], 1, j) for j in range(n)]  # kind 0: end, 1: arrival
    heapq.heapify(events)
    queue: list[int] = []
    running: dict[int, tuple[float, float, float]] = {}  # job -> (start, estimate, limit)
    free = capacity

    def begin(j: int, now: float) -> None:
        nonlocal free
        free -= size[j]
        lim = lim0[j] if attempt[j] == 0 else lim1[j]
        est = est0[j] if attempt[j] == 0 else lim
        running[j] = (now, est, lim)
        start[j] = now
        duration = min(runs[j], lim)
        heapq.heappush(events, (now + duration, 0, j))

    def planned_run(j: int) -> float:
        return est0[j] if attempt[j] == 0 else lim1[j]

    while events:
        now = events[0][0]
        while events and events[0][0] == now:
            _, kind, j = heapq.heappop(events)
            if kind == 1:
                queue.append(j)
                continue
            free += size[j]
            _, _, lim = running.pop(j)
            if attempt[j] == 0 and runs[j] > lim:
                killed[j] = True
                attempt[j] = 1
                queue.append(j)  # resubmitted now, at the back of the queue
            else:
                end[j] = now
        # Start jobs in order while they fit.
        while queue and size[queue[0]] <= free:
            begin(queue.pop(0), now)
        if not queue or free <= 0 or len(queue) < 2:
            continue
        head = size[queue[0]]
        planned = sorted(
            (s + e if s + e > now else s + lm, size[j]) for j, (s, e, lm) in running.items()
        )
        avail, shadow, extra = free, float("inf"), 0
        for t_end, p in planned:
            avail += p
            if avail >= head:
                shadow, extra = t_end, avail - head
                break
        order = sorted(queue[1:], key=planned_run) if sjf else queue[1:]
        started: set[int] = set()
        for j in order:
            if free <= 0:
                break
            p = size[j]
            if p > free:
                continue
            if now + planned_run(j) <= shadow:
                started.add(j)
                begin(j, now)
            elif p <= extra:
                extra -= p
                started.add(j)
                begin(j, now)
        if started:
            queue = [j for j in queue if j not in started]
    return ReplayResult(np.array(start), np.array(end), np.array(killed))
