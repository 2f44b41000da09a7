"""One shared status poller per backend connection in a process: the one poll loop.

Every wait on a job (the deferrable :class:`~airflow_provider_hpcai.triggers.job.JobTrigger` and
the blocking :meth:`JobBackend.wait <airflow_provider_hpcai.backends.base.JobBackend.wait>`) registers
its job here; the poller asks the scheduler about *all* of them in one batched query per interval
(``astatuses``), backs off while nothing changes, rides out transient outages with jittered
retries, and fails the waiters with a clear error only once the outage budget is spent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_hpcai.exceptions import ControllerUnavailableError, TransportError
from airflow_provider_hpcai.jobs.states import JobStatus, Phase

__all__ = ["StatusPoller", "get_poller", "reset_pollers"]

log = logging.getLogger(__name__)

#: Polls in a row a job may be unknown to both the controller and accounting before giving up.
MISSING_POLLS_LIMIT = 5

_POLLERS: dict[tuple[int, str, str], StatusPoller] = {}


class StatusPoller:
    """Batched status queries for one connection, in one event loop.

    :param conn_id: the backend's connection.
    :param fetch: ``async (targets) -> {job_id: JobStatus | None}``: ONE scheduler query. The
        targets are the job ids, or the :class:`~airflow_provider_hpcai.jobs.ref.JobRef` each
        waiter registered (``wait(..., ref=...)``).
    :param interval: seconds between queries while states change.
    :param max_interval: the longest interval backoff reaches while nothing changes.
    :param outage_budget: seconds of consecutive failed queries tolerated before waiters fail.
    """

    def __init__(
        self,
        conn_id: str,
        fetch: Callable[[list[str]], Any],
        *,
        interval: float = 10.0,
        max_interval: float = 60.0,
        outage_budget: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn_id = conn_id
        self.fetch = fetch
        self.interval = interval
        self.max_interval = max(max_interval, interval)
        self.outage_budget = outage_budget
        self.clock = clock
        self._waiters: dict[str, list[asyncio.Future[JobStatus]]] = {}
        self._listeners: dict[str, list[Callable[[JobStatus], None]]] = {}
        self._last: dict[str, str] = {}
        self._missing: dict[str, int] = {}
        self._tags: dict[str, str] = {}
        self._refs: dict[str, Any] = {}
        self._budgets: dict[asyncio.Future[JobStatus], float] = {}
        self._outage_listeners: dict[asyncio.Future[JobStatus], Callable[[str], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # status queries sent (for tests and benchmarks)
        self.current_interval = interval

    # ------------------------------------------------------------------ waiting
    async def wait(self, job_id: str, *, on_change: Callable[[JobStatus], None] | None = None,
                   interval: float | None = None, tag: str | None = None, outage_budget: float | None = None,
                   on_outage: Callable[[str], None] | None = None, ref: Any = None) -> JobStatus:
        """Wait until ``job_id`` leaves the active phase; return its last status.

        With ``tag``, a job under that id carrying another tag is not ours: the controller lost
        our job (e.g. killed before saving its state) and reused the id; it counts as vanished.

        :param outage_budget: this waiter's own tolerance of a controller outage (seconds);
            the poller's default when ``None``. Waiters sharing the poller keep their own budgets.
        :param on_outage: called with a message on each failed query during an outage, so the
            waiting task's own log says what is happening.
        :param ref: what the fetch needs to find the job (its reference); ``None``: the id.
        :raises ControllerUnavailableError: when the controller stays unreachable past the budget.
        """
        if interval is not None and interval < self.interval:
            self.interval = interval
        future: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        self._budgets[future] = self.outage_budget if outage_budget is None else float(outage_budget)
        if on_outage is not None:
            self._outage_listeners[future] = on_outage
        if tag:
            self._tags[job_id] = tag
        if ref is not None:
            self._refs[job_id] = ref
        if on_change is not None:
            self._listeners.setdefault(job_id, []).append(on_change)
        self.current_interval = self.interval  # a newcomer should not wait out a long backoff
        self._ensure_running()
        try:
            return await future
        finally:
            self._forget(job_id, future, on_change)

    def _forget(self, job_id: str, future: asyncio.Future[JobStatus], on_change: Any) -> None:
        self._budgets.pop(future, None)
        self._outage_listeners.pop(future, None)
        waiters = self._waiters.get(job_id, [])
        if future in waiters:
            waiters.remove(future)
        if on_change is not None and on_change in self._listeners.get(job_id, []):
            self._listeners[job_id].remove(on_change)
        if not waiters:
            self._waiters.pop(job_id, None)
            self._listeners.pop(job_id, None)
            self._last.pop(job_id, None)
            self._missing.pop(job_id, None)
            self._tags.pop(job_id, None)
            self._refs.pop(job_id, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"status-poller-{self.conn_id}")

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        outage_started: float | None = None
        failures = 0
        try:
            while self._waiters:
                job_ids = sorted(self._waiters)
                try:
                    self.queries += 1
                    statuses = await self.fetch([self._refs.get(j, j) for j in job_ids])
                except TransportError as err:
                    now = self.clock()
                    outage_started = outage_started if outage_started is not None else now
                    failures += 1
                    if not err.retryable:
                        self._fail_all(err, now - outage_started, failures)
                        outage_started, failures = None, 0
                        continue
                    self._fail_past_budget(err, now - outage_started, failures)
                    if not self._waiters:
                        break
                    delay = random.uniform(0.5, 1.0) * min(self.max_interval, self.interval * 2 ** min(failures, 6))
                    message = (f"Status query on {self.conn_id} failed ({failures} in a row, "
                               f"{now - outage_started:.0f} s into the outage), retrying in {delay:.0f} s: "
                               f"{str(err).splitlines()[0]}")
                    log.warning(message)
                    for listener in list(self._outage_listeners.values()):
                        try:
                            listener(message)
                        except Exception:
                            log.exception("outage listener failed")
                    await asyncio.sleep(delay)
                    continue
                except Exception as err:  # a bug or an unexpected answer: do not leave tasks hanging
                    self._fail_all(err, 0.0, 1)
                    continue
                outage_started, failures = None, 0
                changed = self._dispatch(job_ids, statuses)
                self.current_interval = self.interval if changed else min(self.current_interval * 1.5, self.max_interval)
                if self._waiters:
                    await asyncio.sleep(self.current_interval)
        finally:
            self._task = None

    def _dispatch(self, job_ids: list[str], statuses: dict[str, JobStatus]) -> bool:
        changed = False
        for job_id in job_ids:
            status = statuses.get(job_id)
            expected = self._tags.get(job_id)
            if status is not None and expected and status.tag and status.tag != expected:
                status = None  # the id was reused by someone else's job: ours is gone
            if status is None:
                self._missing[job_id] = self._missing.get(job_id, 0) + 1
                if self._missing[job_id] >= MISSING_POLLS_LIMIT:
                    self._resolve(job_id, JobStatus(job_id, "UNKNOWN", reason="not known to the controller or accounting"))
                    changed = True
                continue
            self._missing.pop(job_id, None)
            if self._last.get(job_id) != status.state:
                changed = True
                self._last[job_id] = status.state
                for listener in list(self._listeners.get(job_id, [])):
                    try:
                        listener(status)
                    except Exception:  # a listener must not stop the poller
                        log.exception("status listener failed")
            if status.phase is not Phase.ACTIVE:
                self._resolve(job_id, status)
        return changed

    def _resolve(self, job_id: str, status: JobStatus) -> None:
        for future in list(self._waiters.get(job_id, [])):
            if not future.done():
                future.set_result(status)

    def _outage_error(self, err: Exception, outage: float, failures: int, budget: float) -> Exception:
        if not isinstance(err, TransportError):
            return err
        return ControllerUnavailableError(
            f"Connection {self.conn_id!r} failed {failures} status queries over {outage:.0f} s "
            f"(budget {budget:.0f} s). The job may still be running, or have finished: once the cluster "
            "answers again, clear the task and it reattaches to its job (or collects its result).",
            command=err.command, returncode=err.returncode, stderr=err.stderr,
        )

    def _fail_past_budget(self, err: TransportError, outage: float, failures: int) -> None:
        """Fail the waiters whose own outage budget is spent; the others keep waiting."""
        for futures in list(self._waiters.values()):
            for future in futures:
                budget = self._budgets.get(future, self.outage_budget)
                if not future.done() and outage >= budget:
                    future.set_exception(self._outage_error(err, outage, failures, budget))

    def _fail_all(self, err: Exception, outage: float, failures: int) -> None:
        for futures in list(self._waiters.values()):
            for future in futures:
                if not future.done():
                    future.set_exception(self._outage_error(err, outage, failures, self.outage_budget))


def get_poller(conn_id: str, fetch_factory: Callable[[], Callable[[list[Any]], Any]], *, backend: str = "slurm",
               **kwargs: Any) -> StatusPoller:
    """The poller for ``backend``'s connection ``conn_id`` in the running event loop (created on first use)."""
    key = (id(asyncio.get_running_loop()), backend, conn_id)
    poller = _POLLERS.get(key)
    if poller is None:
        poller = StatusPoller(conn_id, fetch_factory(), **kwargs)
        _POLLERS[key] = poller
    return poller


def reset_pollers() -> None:
    """Forget every poller (tests)."""
    _POLLERS.clear()
