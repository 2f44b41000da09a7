"""Cluster status for the "HPC Resources" page: gentle on the controller, safe for the api-server.

* However many browsers poll the page, each connection's controller is asked at most once per
  ``ttl`` seconds, by one request at a time (single flight): the others share its answer.
* The asking happens in a small thread pool of the monitor's own, never in the api-server's
  shared one, and a request waits for it at most ``wait_s`` seconds: then it gets the last
  answer marked stale, or a 503 saying to try again. A host that never answers therefore holds
  one thread of this pool, not the api-server.
* A failure is remembered for ``failure_ttl`` seconds, so a dead host is not asked again by
  every page load. Users get a generic message; the reason (which may quote the remote server,
  paths or credentials) goes to the api-server's log only, with anything token-like redacted.
* Only the connections in :mod:`.cluster_access` may be used (``[hpcai] cluster_status_conn_ids``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClusterMonitor", "ServiceUnavailable", "default_cluster_status", "redact", "summarise"]

log = logging.getLogger(__name__)

#: JWTs (also upper-cased or cut short) and ``token=``/``password=`` values in remote error text.
_SECRET_RE = re.compile(r"eyj[a-z0-9_\-]{6,}(?:\.[a-z0-9_\-]*){0,2}|(?:token|password|secret)[\"']?\s?[=:]\s?\S{1,512}",
                        re.IGNORECASE)


class ServiceUnavailable(RuntimeError):
    """A backing service (Slurm hook, advisor) is missing or down; the plugin answers 503."""


def redact(text: str) -> str:
    """``text`` with JWT-like strings and ``token=...`` values replaced by ``[redacted]``."""
    return _SECRET_RE.sub("[redacted]", text[:4000])


def default_cluster_status(conn_id: str | None = None, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Ask the provider's Slurm hook (imported lazily) for nodes, partitions and jobs.

    One try, no retries, each remote call limited to ``timeout_s`` (``[hpcai]
    cluster_status_timeout``): the page polls again anyway.
    """
    try:
        from airflow_provider_hpcai.hooks.slurm import SlurmHook
    except ImportError as err:
        raise ServiceUnavailable(f"the Slurm hook is not installed here ({err})") from None
    if not hasattr(SlurmHook, "cluster_status"):
        raise ServiceUnavailable("this version of the Slurm hook has no cluster_status(); upgrade the provider")
    if timeout_s is None:
        from airflow_provider_hpcai import config

        timeout_s = config.get_float("cluster_status_timeout") or 5.0
    hook = SlurmHook(conn_id) if conn_id else SlurmHook()
    try:
        _short_timeouts(hook.get_conn(), timeout_s)
        return hook.cluster_status()
    except Exception as err:
        raise ServiceUnavailable(f"the Slurm cluster did not answer: {type(err).__name__}: {err}") from None
    finally:
        close = getattr(hook, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: S110 - closing is best effort
                pass


def _short_timeouts(transport: Any, seconds: float) -> None:
    """Limit each command (CLI, SSH) or HTTP request (REST) of ``transport`` to ``seconds``."""
    if hasattr(transport, "command_timeout"):
        transport.command_timeout = seconds
    if hasattr(transport, "timeout"):
        transport.timeout = seconds


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


@dataclass
class _Connection:
    """What the monitor knows about one connection."""

    history: deque[dict[str, Any]]
    answer: tuple[float, dict[str, Any]] | None = None
    failed_at: float | None = None
    pending: concurrent.futures.Future[None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClusterMonitor:
    """Cached, single-flight cluster status per connection, with a usage history.

    :param source: ``source(conn_id) -> status dict`` (may block; runs in the monitor's pool).
    :param ttl: seconds an answer is reused.
    :param failure_ttl: seconds a failure is reused before the cluster is asked again.
    :param wait_s: the longest a request waits for a fresh answer.
    :param history: how many points to keep per connection (720 points at 10 s: two hours).
    :param workers: threads asking clusters at once (one per connection at most).
    :param clock: time source (tests pass a fake).
    """

    def __init__(
        self,
        source: Callable[[str | None], dict[str, Any]] = default_cluster_status,
        *,
        ttl: float = 10.0,
        failure_ttl: float = 30.0,
        wait_s: float = 2.0,
        history: int = 720,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.wait_s = wait_s
        self.clock = clock
        self.calls = 0
        self._maxlen = history
        self._lock = threading.Lock()  # guards _connections; never held while a cluster is asked
        self._connections: dict[str | None, _Connection] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hpcai-cluster")

    # ------------------------------------------------------------------ public
    def status(self, conn_id: str | None = None) -> dict[str, Any]:
        """The latest status (from cache when younger than ``ttl``) plus its history; blocks at most ``wait_s``."""
        state, ready = self._start(conn_id)
        if ready is not None:
            return ready
        assert state.pending is not None
        try:
            state.pending.result(timeout=self.wait_s)
        except concurrent.futures.TimeoutError:
            return self._stale(conn_id, state)
        return self._answer(conn_id, state)

    async def status_async(self, conn_id: str | None = None) -> dict[str, Any]:
        """:meth:`status` for the event loop: waiting holds no thread."""
        state, ready = self._start(conn_id)
        if ready is not None:
            return ready
        assert state.pending is not None
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(state.pending)), self.wait_s)
        except TimeoutError:
            return self._stale(conn_id, state)
        return self._answer(conn_id, state)

    def close(self) -> None:
        """Stop the pool (threads still asking a cluster finish on their own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals
    def _start(self, conn_id: str | None) -> tuple[_Connection, dict[str, Any] | None]:
        """The connection's state, and a ready answer, or a fetch started (single flight)."""
        with self._lock:
            state = self._connections.get(conn_id)
            if state is None:
                state = self._connections[conn_id] = _Connection(history=deque(maxlen=self._maxlen))
        with state.lock:
            now = self.clock()
            if state.answer is not None and now - state.answer[0] < self.ttl:
                return state, self._view(state, now)
            if state.failed_at is not None and now - state.failed_at < self.failure_ttl:
                raise ServiceUnavailable(self._failure_message(conn_id))
            if state.pending is None:
                self.calls += 1
                state.pending = self._pool.submit(self._fetch, conn_id, state)
            return state, None

    def _fetch(self, conn_id: str | None, state: _Connection) -> None:
        try:
            answer = self.source(conn_id)
        except Exception as err:
            log.warning("HPC Resources page: cluster status for connection %r failed: %s", conn_id, redact(str(err)))
            with state.lock:
                state.failed_at = self.clock()
                state.pending = None
            return
        with state.lock:
            now = self.clock()
            state.answer = (now, answer)
            state.failed_at = None
            state.history.append(summarise(answer, now))
            state.pending = None

    def _answer(self, conn_id: str | None, state: _Connection) -> dict[str, Any]:
        with state.lock:
            if state.failed_at is not None or state.answer is None:
                raise ServiceUnavailable(self._failure_message(conn_id))
            return self._view(state, self.clock())

    def _stale(self, conn_id: str | None, state: _Connection) -> dict[str, Any]:
        with state.lock:
            if state.answer is None:
                raise ServiceUnavailable(
                    f"the Slurm cluster behind connection {conn_id or 'the default connection'!r} has not answered "
                    f"within {self.wait_s:g} s; the page asks again by itself"
                )
            return {**self._view(state, self.clock()), "stale": True}

    def _failure_message(self, conn_id: str | None) -> str:
        return (
            f"the Slurm cluster behind connection {conn_id or 'the default connection'!r} did not answer; "
            f"it is asked again within {self.failure_ttl:g} s (an administrator finds the reason in the "
            "api-server log)"
        )

    @staticmethod
    def _view(state: _Connection, now: float) -> dict[str, Any]:
        assert state.answer is not None
        fetched, answer = state.answer
        return {
            **answer,
            "fetched_at": fetched,
            "cache_age_s": round(now - fetched, 3),
            "history": list(state.history),
        }
