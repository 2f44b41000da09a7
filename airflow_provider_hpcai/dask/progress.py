"""Progress lines for the task log, and turning results into XCom-ready JSON values.

:class:`ProgressReporter` reads only the client's own bookkeeping (its futures and their
status) plus the worker count, so it costs the scheduler one small request per interval and
needs nothing installed on the scheduler.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Self

__all__ = ["ProgressReporter", "format_progress", "format_scaling", "summarise_futures", "to_jsonable"]

_STATES = ("finished", "pending", "error", "cancelled", "lost")


def summarise_futures(statuses: Iterable[str]) -> dict[str, int]:
    """Count futures by status (``finished``, ``pending``, ``error``, ``cancelled``, ``lost``) and in total."""
    counts = Counter(statuses)
    summary = {state: counts.get(state, 0) for state in _STATES}
    summary["total"] = sum(counts.values())
    return summary


def format_scaling(wanted: int | None, running: int | None, pending: int | None, bounds: str = "") -> str:
    """The cluster's size, e.g. ``workers: 2 running, 1 pending, 3 wanted (adaptive 1-3 jobs)``.

    :param wanted: workers the cluster asked for (its plan; with adaptive scaling, what Dask's
        ``Adaptive`` last decided).
    :param running: workers connected to the scheduler.
    :param pending: workers asked for that have not joined yet (Slurm: jobs in the queue or starting).
    :param bounds: e.g. ``adaptive 1-3 jobs`` (empty for a fixed cluster).
    """
    parts = [f"{running if running is not None else '?'} running"]
    if pending is not None:
        parts.append(f"{pending} pending")
    if wanted is not None:
        parts.append(f"{wanted} wanted")
    return "workers: " + ", ".join(parts) + (f" ({bounds})" if bounds else "")


def format_progress(summary: dict[str, int], workers: int | None, elapsed: float, *,
                    scaling: str | None = None) -> str:
    """One log line, e.g. ``dask: 12/40 futures finished (28 pending, 0 failed), 2 workers, 8s``.

    :param scaling: a :func:`format_scaling` text shown instead of the plain worker count.
    """
    total = summary.get("total", 0)
    failed = summary.get("error", 0) + summary.get("lost", 0) + summary.get("cancelled", 0)
    text = (
        f"dask: {summary.get('finished', 0)}/{total} futures finished "
        f"({summary.get('pending', 0)} pending, {failed} failed)"
    )
    if scaling:
        text += f"; {scaling};"
    elif workers is not None:
        text += f", {workers} worker{'s' if workers != 1 else ''}"
    return text + f" {elapsed:.0f}s" if scaling else text + f", {elapsed:.0f}s"


class ProgressReporter:
    """Log the client's progress every ``interval`` seconds from a daemon thread, while in a ``with`` block.

    :param client: a ``distributed.Client``.
    :param log: where the lines go (the task's logger).
    :param interval: seconds between lines; a line is also skipped when nothing changed.
    :param scaling: returns the cluster's size as a :func:`format_scaling` text (called from the
        reporting thread; ``None`` or an exception: the plain worker count is shown).
    """

    def __init__(self, client: Any, log: logging.Logger | Any, interval: float = 10.0,
                 scaling: Callable[[], str | None] | None = None) -> None:
        self.client = client
        self.scaling = scaling
        self.log = log
        self.interval = max(0.1, float(interval))
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def snapshot(self) -> tuple[dict[str, int], int | None]:
        """The futures' summary and the number of workers (``None`` when the scheduler did not answer)."""
        futures = getattr(self.client, "futures", {}) or {}
        for _ in range(3):  # the client's event loop mutates the dict concurrently
            try:
                statuses = [state.status for state in list(futures.values())]
                break
            except RuntimeError:
                continue
        else:
            statuses = []
        try:
            workers: int | None = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # a progress line must never fail the task
            workers = None
        return summarise_futures(statuses), workers

    def report(self) -> str:
        summary, workers = self.snapshot()
        scaling = None
        if self.scaling is not None:
            try:
                scaling = self.scaling()
            except Exception:  # a progress line must never fail the task
                scaling = None
        line = format_progress(summary, workers, time.monotonic() - self._start, scaling=scaling)
        if not self.lines or _unchanging(line) != _unchanging(self.lines[-1]):
            self.log.info("%s", line)
        self.lines.append(line)
        return line

    def finish(self) -> str:
        """Log and return the closing line, e.g. ``dask: done in 2.1s, 2 workers``."""
        _, workers = self.snapshot()
        line = f"dask: done in {time.monotonic() - self._start:.1f}s"
        if workers is not None:
            line += f", {workers} worker{'s' if workers != 1 else ''}"
        self.log.info("%s", line)
        self.lines.append(line)
        return line

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as err:  # pragma: no cover - never break the task
                self.log.debug("dask progress report failed: %s", err)

    def __enter__(self) -> Self:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="hpcai-dask-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _unchanging(line: str) -> str:
    """The line without its elapsed time (the last word): equal texts mean nothing changed."""
    return line.rsplit(" ", 1)[0]


def to_jsonable(value: Any, *, what: str = "result") -> Any:
    """Return ``value`` as plain JSON data (numpy scalars and arrays, tuples and sets converted).

    Non-finite floats stay as they are (XCom writes them as ``NaN``/``Infinity``).

    :raises TypeError: naming the first part that cannot go to XCom and what to return instead.
    """
    converted = _convert(value, what)
    json.dumps(converted, allow_nan=True)  # final check; _convert already raised for anything odd
    return converted


def _convert(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)):
                raise TypeError(f"{path} has a key {key!r} of type {type(key).__name__}: XCom keys must be strings")
            out[str(key)] = _convert(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_convert(item, f"{path}[{i}]") for i, item in enumerate(items)]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return _convert(value.tolist(), path)
    if hasattr(value, "item") and callable(value.item):
        return _convert(value.item(), path)
    raise TypeError(
        f"{path} is a {type(value).__module__}.{type(value).__name__}, which cannot be stored in XCom: "
        "return plain numbers, strings, lists and dicts (write large data to a file and return its path)"
    )
