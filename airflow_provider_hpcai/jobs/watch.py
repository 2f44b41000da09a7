"""The one wait on a job, for every backend: blocking (a worker thread) or deferred (the triggerer).

:func:`watch` registers the job with the shared batched poller (:mod:`.poller`), logs its state
changes, copies its output into the task log by the one rule (:func:`.output.take_lines`) while
it runs, and returns its final status. The backend is reached through an access object:
:class:`BlockingAccess` calls the backend's plain methods (the loop serves one waiter),
:class:`DeferredAccess` its ``a*`` methods (the triggerer's loop serves them all).

:func:`wait_for_accounting` is the bounded wait for a finished job's accounting record (slurmdbd
down or behind), so that a result is never classified without it when it is only late.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from airflow_provider_hpcai.jobs.output import (
    CHUNK_BYTES,
    OutputRestarted,
    ResumeState,
    cap_notice,
    output_cap,
    take_lines,
)
from airflow_provider_hpcai.jobs.poller import StatusPoller, get_poller
from airflow_provider_hpcai.jobs.ref import JobRef
from airflow_provider_hpcai.jobs.states import JobStatus, Phase

__all__ = ["ACCOUNTING_LAG_SECONDS", "BlockingAccess", "DeferredAccess", "OutputRestarted", "copy_output", "run_sync",
           "wait_for_accounting", "watch"]

#: How long a finished job's record may lag in an accounting service that answers (slurmdbd
#: receives it from the controller a little after the job ends).
ACCOUNTING_LAG_SECONDS = 20.0
#: Seconds between two "still waiting for accounting" lines in the task log.
_WAIT_NOTE_EVERY = 30.0
_clock, _sleep = time.monotonic, time.sleep  # module seams (tests replace them)

_T = TypeVar("_T")


class _Backend(Protocol):  # what watch() needs of a backend (JobBackend fulfils it)
    name: str
    conn_id: str | None

    def describe(self, ref: JobRef) -> str: ...

    def output_label(self, ref: JobRef, stream: str) -> str: ...

    def vanished(self, ref: JobRef) -> JobStatus | None: ...


class BlockingAccess:
    """The backend's plain (blocking) calls, awaitable: for the wait in a worker."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        return self.backend.statuses(list(refs))

    async def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        return self.backend.read_output(ref, stream, offset, limit)

    async def output_streams(self, ref: JobRef) -> Sequence[str]:
        return self.backend.output_streams(ref)


class DeferredAccess(BlockingAccess):
    """The backend's ``a*`` calls: for the triggerer's event loop, which must never block."""

    async def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        return await self.backend.astatuses(list(refs))

    async def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        return await self.backend.aread_output(ref, stream, offset, limit)

    async def output_streams(self, ref: JobRef) -> Sequence[str]:
        return await self.backend.aoutput_streams(ref)


def _fetcher(access: BlockingAccess) -> Any:
    backend = access.backend

    async def fetch(targets: list[Any]) -> dict[str, JobStatus]:
        refs = [t for t in targets if isinstance(t, JobRef)]
        found = await access.statuses(refs)
        out: dict[str, JobStatus] = {}
        for ref in refs:
            status = found.get(ref.job_id)
            if status is None:
                status = backend.vanished(ref)
            if status is not None:
                out[ref.job_id] = status
        return out

    return fetch


def _where(ref: JobRef, stream: str) -> str:
    """Where the part of ``stream`` past the cap stays, in words."""
    base, _, source = stream.partition("@")
    path = ref.stdout_path if base == "stdout" else ref.stderr_path if base == "stderr" else None
    if source:
        return f"the log of {source}"
    if path and "%" not in path:
        return path
    return f"the job's {stream} file"


async def copy_output(access: BlockingAccess, ref: JobRef, resume: ResumeState, log: Any, *, final: bool,
                      cap: int | None = None) -> None:
    """Copy what the job's output streams gained since ``resume`` into ``log`` (by the one rule).

    Reads go :data:`~.output.CHUNK_BYTES` at a time (memory stays bounded however large the output
    grows); at most ``cap`` bytes of each stream reach the log, then one line says where the rest is.

    :param cap: bytes per stream (``None``: ``[hpcai] log_output_cap``; 0: no cap).
    """
    backend = access.backend
    cap = output_cap() if cap is None else cap
    for stream in await access.output_streams(ref):
        base = stream.partition("@")[0]
        if stream not in resume.offsets:
            earlier = [s for s in resume.offsets if s != stream and s.partition("@")[0] == base and "@" in s]
            if earlier:
                log.info("[%s] output now comes from %s (was %s)", ref.job_id, stream.partition("@")[2] or stream,
                         earlier[-1].partition("@")[2] or earlier[-1])
            elif "@" in stream and resume.offset(base):  # an earlier version's count for this stream
                resume.offsets[stream] = resume.offsets.pop(base)
        label = backend.output_label(ref, stream)
        while True:
            offset = resume.offset(stream)
            if cap and offset >= cap:
                if stream not in resume.capped and await access.read_output(ref, stream, offset, 1):
                    resume.capped.append(stream)
                    log.warning("[%s] %s", label, cap_notice(stream, cap, _where(ref, stream)))
                break
            limit = min(CHUNK_BYTES, cap - offset) if cap else CHUNK_BYTES
            try:
                chunk = await access.read_output(ref, stream, offset, limit)
            except OutputRestarted:
                log.info("[%s] %s started over (rotated); showing it from its current start", label, stream)
                resume.restart(stream)
                continue
            count, lines = take_lines(chunk, final=final, limit=limit)
            if count <= 0:
                break
            resume.advance(stream, count)
            for line in lines:
                log.info("[%s] %s", label, line)
            del chunk, lines
            if count < limit and not (cap and resume.offset(stream) >= cap):
                break


class _Streamer:
    """Copies output while the job runs; warns once when it cannot (output never fails the wait)."""

    def __init__(self, access: BlockingAccess, ref: JobRef, resume: ResumeState, log: Any) -> None:
        self.access, self.ref, self.resume, self.log = access, ref, resume, log
        self.warned = False

    async def copy(self, *, final: bool) -> None:
        try:
            await copy_output(self.access, self.ref, self.resume, self.log, final=final)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if not self.warned:
                self.log.warning("Could not read the log of %s (will keep trying): %s", self.ref.job_id, err)
                self.warned = True

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.copy(final=False)


async def watch(access: BlockingAccess, ref: JobRef, *, interval: float, max_interval: float, outage_budget: float,
                resume: ResumeState, log: Any, stream: bool) -> JobStatus:
    """Wait until ``ref`` leaves the active phase; return its last status.

    :param access: how to reach the backend (:class:`BlockingAccess` or :class:`DeferredAccess`).
    :param interval: seconds between the poller's queries while states change.
    :param max_interval: the longest backoff while nothing changes.
    :param outage_budget: seconds of failed status queries this wait tolerates.
    :param resume: what of the output was shown already; advanced in place.
    :param log: the task's (or trigger's) logger.
    :param stream: copy output while the job runs (at the end it is copied anyway).
    :raises ControllerUnavailableError: the scheduler stayed unreachable past the budget.
    """
    backend: _Backend = access.backend
    bounds = {"interval": interval, "max_interval": max_interval, "outage_budget": outage_budget}
    if isinstance(access, DeferredAccess):  # one poller per connection for all the triggerer's waits
        poller = get_poller(backend.conn_id or backend.name, lambda: _fetcher(access), backend=backend.name, **bounds)
    else:  # a blocking wait has its event loop to itself
        poller = StatusPoller(backend.conn_id or backend.name, _fetcher(access), **bounds)

    def changed(status: JobStatus) -> None:
        reason = f" ({status.reason})" if status.reason else ""
        log.info("%s is %s%s", backend.describe(ref), status.state, reason)

    streamer = _Streamer(access, ref, resume, log)
    task = asyncio.get_running_loop().create_task(streamer.run(interval)) if stream else None
    try:
        status = await poller.wait(ref.job_id, on_change=changed, interval=interval, tag=ref.tag,
                                   outage_budget=outage_budget, on_outage=log.warning, ref=ref)
    finally:
        if task is not None:
            task.cancel()
    if stream:
        await streamer.copy(final=status.phase is not Phase.ACTIVE)
    return status


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to its end from blocking code (in a thread of its own if a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def wait_for_accounting(fetch: Callable[[], dict[str, Any]], *, final: Callable[[dict[str, Any]], bool], what: str,
                        wait: float, log: Any, lag: float = ACCOUNTING_LAG_SECONDS,
                        clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                        every: float = 2.0, max_every: float = 15.0) -> dict[str, Any]:
    """A finished job's accounting record, waiting for it while the accounting service is down or behind.

    * The service answers with a final record: that record.
    * It answers without any record of the job: retried for up to ``lag`` seconds (the record of a
      job that just ended lags the controller; a job it never hears of must not hold the task).
    * It holds the job but not as ended (the controller's message with the end has not reached it,
      e.g. the controller went down right after the job ended): retried for up to ``wait`` seconds.
    * It does not answer (a retryable :class:`~airflow_provider_hpcai.exceptions.TransportError`:
      slurmdbd down): retried for up to ``wait`` seconds from the first query, with a line in the
      task log saying why the task waits and for how much longer.
    * It refuses for good (a non-retryable error: accounting not configured) or the wait runs out:
      ``{}`` (the result then comes from the controller's state), with a warning when it ran out.

    :param fetch: one accounting query for the job: its record (``{}`` when it has none yet).
    :param final: whether a record holds the job's final state.
    :param what: the job in words (``Slurm job 42``), for the log.
    :param wait: the longest wait while the service does not answer (``[hpcai] accounting_wait``).
    :param log: the task's logger.
    :param lag: the longest wait while the service answers without a final record.
    :param clock: seconds, monotonic (default :func:`time.monotonic`).
    :param sleep: how to wait (default :func:`time.sleep`).
    """
    from airflow_provider_hpcai.exceptions import TransportError

    clock = clock or _clock
    sleep = sleep or _sleep
    start = clock()
    down_since: float | None = None
    behind_since: float | None = None
    record: dict[str, Any] = {}
    noted_at, noted_reason, delay = None, "", every
    while True:
        reason = ""
        try:
            record = fetch() or {}
        except TransportError as err:
            if not err.retryable:
                return {}
            down_since = clock() if down_since is None else down_since
            first = (str(err.stderr or "").strip() or str(err)).splitlines()
            reason = f"the accounting service does not answer: {first[-1][:200] if first else err}"
        except Exception:  # accounting is optional (clusters without slurmdbd)
            return {}
        if record and final(record):
            if down_since is not None or noted_at is not None:
                log.info("The accounting record of %s arrived after %.0f s", what, clock() - start)
            return record
        if record and not reason:  # it knows the job, but not yet that it ended: its end is on the way
            behind_since = clock() if behind_since is None else behind_since
            reason = f"the accounting record still says {record.get('state')}: the job's end has not reached it yet"
        reason = reason or "the accounting service has no record of it yet"
        limit = wait if down_since is not None or behind_since is not None else min(lag, wait)
        now = clock()
        if now - start >= limit:
            if limit > 0:
                log.warning("%s ended, but its accounting record did not arrive within %.0f s ([hpcai] "
                            "accounting_wait): %s. Its result is classified from the controller's state alone.",
                            what, limit, reason)
            return {}
        if (down_since is not None or behind_since is not None) and (reason != noted_reason or noted_at is None or now - noted_at >= _WAIT_NOTE_EVERY):
            log.warning("%s ended; waiting for its accounting record so that its result is not classified "
                        "without it (%s); up to %.0f s more ([hpcai] accounting_wait)", what, reason,
                        limit - (now - start))
            noted_at, noted_reason = now, reason
        sleep(max(0.0, min(delay, limit - (now - start))))
        delay = min(delay * 1.5, max_every)
