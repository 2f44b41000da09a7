"""Recency features of a job's series, vectorised (training, replay) and pure Python (policy).

For each job the models look at the jobs of the same series (DAG task, or user) that had
*finished* by the time it was submitted (never later ones): the last value, the mean of the
last two (Tsafrir's predictor), the max of the last 5 and 20, how much of its request the last
job used, whether the request is the same as last time, and how the problem size changed.
A job without history gets ``has_hist = 0`` and its request in place of the history values.

:func:`history_features` computes them for a whole trace with numpy;
:func:`features_from_state` computes the same numbers for one job from a
:class:`SeriesState` in pure Python (microseconds), which is what the exported compact model
uses at decision time. A unit test keeps the two identical.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["FEATURES", "HIST_LEN", "SeriesState", "features_from_state", "history_features"]

FEATURES: tuple[str, ...] = (
    "const",
    "log_request",
    "log_procs",
    "has_hist",
    "log_last1",
    "log_mean_last2",
    "log_max_last5",
    "log_max_last20",
    "log_used_fraction_last1",
    "log_request_x_used_last1",
    "same_request",
    "delta_log_size",
    "log_hist_count",
)
HIST_LEN = 20
_HIST_COUNT_CAP = 50
_TINY = 1e-9


def _log(value: float) -> float:
    return math.log(max(value, _TINY))


class SeriesState:
    """The last :data:`HIST_LEN` finished jobs of one series (value, request, log size), oldest first.

    :param count: how many jobs the series has had in all (capped at 50 for the feature).
    """

    __slots__ = ("count", "history")

    def __init__(self, history: Sequence[Sequence[float | None]] = (), count: int | None = None) -> None:
        self.history: deque[tuple[float, float, float | None]] = deque(
            ((float(v), float(r), None if s is None else float(s)) for v, r, s in history), maxlen=HIST_LEN
        )
        self.count = len(self.history) if count is None else int(count)

    def observe(self, value: float, request: float, log_size: float | None = None) -> None:
        """Add a finished job (in order of finishing)."""
        self.history.append((float(value), float(request), log_size))
        self.count += 1

    def to_list(self) -> list[Any]:
        return [[v, r, s] for v, r, s in self.history]


def features_from_state(
    state: SeriesState | None, request: float, procs: float, log_size: float | None = None
) -> list[float]:
    """The :data:`FEATURES` of a job about to be submitted, in pure Python.

    :param state: the series' history (``None`` or empty when it has none).
    :param request: the requested value (seconds or bytes).
    :param procs: CPU cores requested.
    :param log_size: log of the problem size, when known.
    """
    lreq = _log(request)
    lprocs = _log(procs)
    history = state.history if state is not None else ()
    n = len(history)
    if n == 0:
        return [1.0, lreq, lprocs, 0.0, lreq, lreq, lreq, lreq, 0.0, lreq, 0.0, 0.0, 0.0]
    last_value, last_request, last_size = history[-1]
    l1 = _log(last_value)
    l2 = _log((last_value + history[-2][0]) / 2.0) if n >= 2 else l1
    values = [h[0] for h in history]
    max5 = _log(max(values[-5:]))
    max20 = _log(max(values))
    used = l1 - _log(last_request)
    same = 1.0 if last_request == request else 0.0
    dsize = (log_size - last_size) if (log_size is not None and last_size is not None) else 0.0
    count = min(state.count if state is not None else n, _HIST_COUNT_CAP)
    return [1.0, lreq, lprocs, 1.0, l1, l2, max5, max20, used, lreq + used, same, dsize, math.log1p(count)]


def history_features(
    submit: Any, finish: Any, series: Any, value: Any, request: Any, procs: Any, log_size: Any = None
) -> Any:
    """:data:`FEATURES` for every job of a trace at once.

    All arguments are 1-D arrays of the same length (any order). ``series`` holds integer
    codes; ``log_size`` may be ``None`` or hold NaN where unknown.

    :return: a float64 matrix, one row per job (same order as the inputs).
    """
    import numpy as np

    submit = np.asarray(submit, dtype=float)
    finish = np.asarray(finish, dtype=float)
    series = np.asarray(series, dtype=np.int64)
    value = np.maximum(np.asarray(value, dtype=float), _TINY)
    request = np.maximum(np.asarray(request, dtype=float), _TINY)
    procs = np.maximum(np.asarray(procs, dtype=float), _TINY)
    n_jobs = len(submit)
    lsize = np.full(n_jobs, np.nan) if log_size is None else np.asarray(log_size, dtype=float)

    # Jobs ordered by (series, finish): the history of job j is the run of its series that
    # finished at or before its submission.
    order = np.lexsort((finish, series))
    base = (series[order] - series.min()).astype(float) * 1e10
    key = base + (finish[order] - finish.min())
    offset = (series - series.min()).astype(float) * 1e10
    pos = np.searchsorted(key, offset + (submit - finish.min()), side="right")
    first = np.searchsorted(key, offset, side="left")
    count = pos - first
    has = count >= 1

    v_sorted = value[order]
    r_sorted = request[order]
    s_sorted = lsize[order]
    last = np.clip(pos - 1, 0, n_jobs - 1)
    prev = np.clip(pos - 2, 0, n_jobs - 1)
    lreq = np.log(request)
    l1 = np.where(has, np.log(v_sorted[last]), lreq)
    l2 = np.where(count >= 2, np.log((v_sorted[last] + v_sorted[prev]) / 2.0), l1)

    def window_max(width: int) -> Any:
        best = np.full(n_jobs, -np.inf)
        for k in range(width):
            idx = pos - 1 - k
            ok = k < count
            best = np.where(ok, np.maximum(best, v_sorted[np.clip(idx, 0, n_jobs - 1)]), best)
        return np.where(has, np.log(np.maximum(best, _TINY)), l1)

    used = np.where(has, l1 - np.log(r_sorted[last]), 0.0)
    same = np.where(has & (r_sorted[last] == request), 1.0, 0.0)
    dsize = np.where(has & np.isfinite(lsize) & np.isfinite(s_sorted[last]), lsize - s_sorted[last], 0.0)
    dsize = np.nan_to_num(dsize, nan=0.0)
    hist_count = np.where(has, np.log1p(np.minimum(count, _HIST_COUNT_CAP)), 0.0)
    return np.column_stack(
        [
            np.ones(n_jobs),
            lreq,
            np.log(procs),
            has.astype(float),
            l1,
            l2,
            window_max(5),
            window_max(HIST_LEN),
            used,
            np.where(has, lreq + used, lreq),
            same,
            dsize,
            hist_count,
        ]
    )
