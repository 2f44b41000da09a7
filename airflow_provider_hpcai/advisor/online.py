"""The time-ordered loop: refit periodically, predict at submission, calibrate at completion.

Jobs are taken in submission order. The model is first fitted on the jobs finished by 15 %
of the trace, refitted at 30 % (where the evaluation starts) and then every ``refit_every``
jobs on a trailing window of finished jobs; it never sees a job before that job has
finished. Margins are updated in order of completion. The same loop trains the exported
model (:func:`train_compact`) and produces the evaluation's limits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai.advisor.features import FEATURES, SeriesState, history_features
from airflow_provider_hpcai.advisor.history import JobRecord, size_of
from airflow_provider_hpcai.advisor.models import (
    CompactModel,
    OnlineMargin,
    TargetModel,
    TargetSpec,
    fit_quantreg,
)
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["JobTable", "OnlineResult", "run_online", "table_from_records", "train_compact"]


@dataclasses.dataclass
class JobTable:
    """Columns of one target over a trace, sorted by submission time.

    ``value`` is what the job used (run time capped at its request, or peak memory);
    ``series`` are integer codes into ``series_names``.
    """

    submit: Any
    finish: Any
    series: Any
    value: Any
    request: Any
    procs: Any
    log_size: Any = None
    series_names: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.submit)

    def sorted(self) -> JobTable:
        import numpy as np

        order = np.argsort(self.submit, kind="stable")
        pick = (lambda a: None if a is None else np.asarray(a)[order])
        return JobTable(
            pick(self.submit), pick(self.finish), pick(self.series), pick(self.value),
            pick(self.request), pick(self.procs), pick(self.log_size), self.series_names,
        )


@dataclasses.dataclass
class OnlineResult:
    """What the loop produced, one entry per job (NaN/request where nothing was predicted)."""

    raw: Any
    margin: Any
    limit: Any
    predicted: Any
    exceeded: Any
    coef: list[float]
    margins: OnlineMargin
    refits: int
    test_start: int


def _fit_at(X: Any, y: Any, submit: Any, finish: Any, i: int, window: int, quantile: float) -> list[float] | None:
    import numpy as np

    done = np.flatnonzero(finish[:i] <= submit[i]) if i < len(submit) else np.arange(i)
    done = done[-window:]
    if len(done) < X.shape[1] + 2:
        return None
    return fit_quantreg(X[done], y[done], quantile)


def run_online(
    table: JobTable,
    spec: TargetSpec,
    *,
    warmup_fraction: float = 0.3,
    refit_every: int | None = None,
    window: int = 15000,
) -> OnlineResult:
    """Run the time-ordered loop over ``table`` (sorted by submission)."""
    import numpy as np

    n = len(table)
    X = history_features(table.submit, table.finish, table.series, table.value, table.request, table.procs,
                         table.log_size)
    y = np.log(np.maximum(np.asarray(table.value, dtype=float), 1e-9))
    submit = np.asarray(table.submit, dtype=float)
    finish = np.asarray(table.finish, dtype=float)
    request = np.asarray(table.request, dtype=float)
    test_start = int(warmup_fraction * n)
    step = refit_every or max(500, n // 20)
    points = sorted({int(0.5 * test_start), test_start, *range(test_start + step, n, step)})
    raw = np.full(n, np.nan)
    coef: list[float] | None = None
    refits = 0
    for a, b in zip(points, [*points[1:], n]):
        fitted = _fit_at(X, y, submit, finish, a, window, spec.quantile)
        if fitted is not None:
            coef, refits = fitted, refits + 1
        if coef is not None:
            raw[a:b] = X[a:b] @ np.asarray(coef)
    if coef is None:
        raise InvalidJobSpecError(
            f"not enough finished jobs to fit the {spec.name} model ({n} in all); collect more history first"
        )

    # Margins: predictions at submission, updates at completion, completion first on ties.
    margins = OnlineMargin(spec.target_rate, spec.gamma, spec.series_gamma, spec.min_obs)
    predicted = np.isfinite(raw)
    jobs = np.flatnonzero(predicted)
    times = np.concatenate([submit[jobs], finish[jobs]])
    kinds = np.concatenate([np.ones(len(jobs), dtype=np.int8), np.zeros(len(jobs), dtype=np.int8)])
    who = np.concatenate([jobs, jobs])
    order = np.lexsort((kinds, times))
    series = np.asarray(table.series)
    used = np.zeros(n)
    g_used = np.zeros(n)
    s_used = np.zeros(n)
    raw_list, y_list, series_list = raw.tolist(), y.tolist(), series.tolist()
    kills = spec.calibration == "kills"
    # For kill calibration a margin "fails" only when the limit it gives would have killed the job:
    # log(limit) = max(raw + margin, log floor), advised only below abstain_ratio x request.
    log_floor = math.log(spec.floor) if spec.floor > 0 else -math.inf
    log_cap = np.log(np.maximum(spec.abstain_ratio * request, 1e-300)).tolist()

    def killed(j: int, margin: float) -> float:
        log_limit = max(raw_list[j] + margin, log_floor)
        return 1.0 if log_limit < log_cap[j] and y_list[j] > log_limit else -1.0

    if kills:
        # A kill is known when it happens (submission + limit), not when the job would have
        # ended: the margins learn of it then, so a burst of a series' jobs stops sooner.
        import heapq

        submit_list, finish_list = submit.tolist(), finish.tolist()
        pending: list[tuple[float, int]] = []
        for j in jobs[np.argsort(submit[jobs], kind="stable")].tolist():
            now = submit_list[j]
            while pending and pending[0][0] <= now:  # completions (and kills) first on ties
                _, k = heapq.heappop(pending)
                margins.update(series_list[k], killed(k, g_used[k]), killed(k, s_used[k]))
            s = series_list[j]
            g, m = margins.current(s)
            g_used[j], s_used[j] = g, m
            used[j] = margins.margin(s)
            when = finish_list[j]
            log_limit = max(raw_list[j] + used[j], log_floor)
            if log_limit < log_cap[j] and y_list[j] > log_limit:
                when = min(when, now + math.exp(log_limit))
            heapq.heappush(pending, (when, j))
        while pending:
            _, k = heapq.heappop(pending)
            margins.update(series_list[k], killed(k, g_used[k]), killed(k, s_used[k]))
        order = order[:0]
    for e in order.tolist():
        j = int(who[e])
        s = series_list[j]
        if kinds[e]:
            g, m = margins.current(s)
            g_used[j], s_used[j] = g, m
            used[j] = margins.margin(s)
        else:
            r = y_list[j] - raw_list[j]
            margins.update(s, r - g_used[j], r - s_used[j])
    value_limit = np.maximum(np.exp(np.minimum(raw + used, 700.0)), spec.floor)
    limit = np.where(predicted & (value_limit < spec.abstain_ratio * request), value_limit, request)
    if kills:  # "exceeded" is then what the margins hold: a kill under the advised limit
        exceeded = predicted & (limit < request) & (np.asarray(table.value, dtype=float) > limit)
    else:
        exceeded = predicted & (y > raw + used)
    return OnlineResult(raw, used, limit, predicted, exceeded, coef, margins, refits, test_start)


def table_from_records(records: Sequence[JobRecord], target: str) -> tuple[JobTable, list[JobRecord]]:
    """A :class:`JobTable` of ``runtime`` or ``memory`` from job records (those that have both values)."""
    import numpy as np

    rows = []
    for record in records:
        if target == "runtime":
            value, request = record.elapsed_seconds, record.requested_seconds
            if value is not None and request:
                value = min(value, request)  # a TIMEOUT job used at least its whole limit
        else:
            value, request = record.max_rss_bytes, record.requested_memory_bytes
        if value and request:
            rows.append((record, float(value), float(request)))
    rows.sort(key=lambda row: row[0].submit_time)
    names = sorted({r.series for r, _, _ in rows})
    code = {name: i for i, name in enumerate(names)}
    kept = [r for r, _, _ in rows]
    sizes = [size_of(r.size_params) for r in kept]
    table = JobTable(
        submit=np.array([r.submit_time for r in kept], dtype=float),
        finish=np.array([r.submit_time + (r.elapsed_seconds or 0.0) for r in kept], dtype=float),
        series=np.array([code[r.series] for r in kept], dtype=np.int64),
        value=np.array([v for _, v, _ in rows], dtype=float),
        request=np.array([q for _, _, q in rows], dtype=float),
        procs=np.array([max(r.cpus, 1) for r in kept], dtype=float),
        log_size=np.array([math.log(s) if s else np.nan for s in sizes], dtype=float),
        series_names=names,
    )
    return table, kept


def final_states(table: JobTable) -> dict[str, SeriesState]:
    """Each series' last finished jobs, for the compact model."""
    import numpy as np

    states: dict[str, SeriesState] = {}
    lsize = table.log_size if table.log_size is not None else np.full(len(table), np.nan)
    for j in np.argsort(table.finish, kind="stable").tolist():
        name = table.series_names[int(table.series[j])]
        size = float(lsize[j])
        states.setdefault(name, SeriesState()).observe(
            float(table.value[j]), float(table.request[j]), None if math.isnan(size) else size
        )
    return states


def train_compact(
    records: Sequence[JobRecord], specs: Sequence[TargetSpec], *, version: str = "local"
) -> tuple[CompactModel, dict[str, Any]]:
    """Train the exported model from job records: one target per spec that has enough data.

    :return: the compact model and per-target figures (exceedance rate, jobs used).
    :raises InvalidJobSpecError: when no target has enough history.
    """
    import numpy as np

    targets: dict[str, TargetModel] = {}
    series: dict[str, dict[str, SeriesState]] = {}
    figures: dict[str, Any] = {}
    for spec in specs:
        # "runtime_estimate" (the policy's q0.3 time_min) learns from the run-time table too.
        table, _ = table_from_records(records, "runtime" if spec.name.startswith("runtime") else spec.name)
        if len(table) < 2 * len(FEATURES):
            figures[spec.name] = {"jobs": len(table), "skipped": "not enough history"}
            continue
        result = run_online(table.sorted(), spec)
        table = table.sorted()
        X = history_features(table.submit, table.finish, table.series, table.value, table.request, table.procs,
                             table.log_size)
        coef = fit_quantreg(X[-15000:], np.log(np.maximum(table.value[-15000:], 1e-9)), spec.quantile)
        names = table.series_names
        margins = {
            names[int(s)]: (float(m), int(c)) for s, (m, c) in result.margins.series.items()
        }
        targets[spec.name] = TargetModel(spec, coef, float(result.margins.global_margin), margins)
        if spec.name in ("runtime", "memory"):  # the estimate reads the run-time series
            for name, state in final_states(table).items():
                series.setdefault(name, {})[spec.name] = state
        test = np.arange(len(table)) >= result.test_start
        figures[spec.name] = {
            "jobs": len(table),
            "exceedance": float(result.exceeded[test & result.predicted].mean()) if test.any() else None,
        }
    if not targets:
        raise InvalidJobSpecError(
            f"not enough job history to train ({figures}); each target needs {2 * len(FEATURES)} finished jobs"
        )
    return CompactModel(version=version, targets=targets, series=series, metrics={}), figures
