"""What the policy reads besides the champion: the guard's live state and the series' last runs.

Both are read cheaply, because the policy runs at every DAG parse in every Airflow process:
the guard's state through :mod:`~airflow_provider_hpcai.advisor.live_guard` (a snapshot re-read
at most every 30 s, and only when the file changed), the last run times of a series from the
history store (one indexed SQLite query per series, kept for 30 s; a second one, of the series' jobs
at the same cores, only where ``[hpcai] advisor_guard_extra_candidates`` names ``user_procs_max20``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ESTIMATE_TARGET", "RECENT_TTL_S", "clear_recent", "decide_for", "guard_verdict", "recent_runs"]

#: The champion's run-time target at q0.3 (no margin): what ``enforce`` plans with (``time_min``).
ESTIMATE_TARGET = "runtime_estimate"
RECENT_TTL_S = 30.0
_recent: dict[tuple[Any, ...], tuple[float, list[float]]] = {}
_recent_lock = threading.Lock()


def clear_recent() -> None:
    """Forget the cached run times (tests)."""
    with _recent_lock:
        _recent.clear()


def recent_runs(home: str, series: str, n: int = 20, *, clock: Any = time.monotonic,
                cpus: int | None = None) -> list[float]:
    """The series' last ``n`` run times (newest first) from the history store, cached ``RECENT_TTL_S`` s.

    :param cpus: only its jobs of this many cores in all (the guard's opt-in ``user_procs_max20``).
    """
    from airflow_provider_hpcai.advisor.history import HistoryStore

    now = clock()
    key = (home, series) if cpus is None else (home, series, int(cpus))
    with _recent_lock:
        hit = _recent.get(key)
        if hit is not None and hit[0] > now:
            return hit[1][:n]
    runs = HistoryStore(home).last_runs(series, max(n, 20), cpus=cpus)
    with _recent_lock:
        _recent[key] = (now + RECENT_TTL_S, runs)
    return runs[:n]


def _log_size(key: Mapping[str, Any]) -> float | None:
    """Log of the problem size, as :meth:`CompactModel.predict` computes it."""
    from airflow_provider_hpcai.advisor.history import size_of

    params = key.get("size_params")
    if params is None:
        params = {k: v for k, v in key.items() if k not in ("dag_id", "task_id", "owner", "user", "kernel", "image")}
    size = size_of(params)
    return math.log(size) if size else None


def guard_verdict(home: str, key: Mapping[str, Any], requested: Any, model: Any) -> dict[str, Any] | None:
    """The guarded run-time decision for a task: the champion's prediction through the guard's rules.

    :param model: the champion (:class:`~airflow_provider_hpcai.advisor.models.CompactModel`) or ``None``.
    :return: the guard's JSON-safe record (``limit``: the advised limit, ``None`` to keep the
        request; ``held``: why; ``estimate``: the q0.3 run-time estimate when the champion has
        it), or ``None`` when there is nothing to judge (no model, no run-time target, no time
        limit asked, or no history for the series in the champion).
    """
    if model is None or requested.time_limit_seconds is None:
        return None
    from airflow_provider_hpcai.advisor.features import features_from_state
    from airflow_provider_hpcai.advisor.history import series_key
    from airflow_provider_hpcai.advisor.live_guard import judge

    target = model.targets.get("runtime")
    series = series_key(key)
    state = model.series.get(series, {}).get("runtime")
    if target is None or state is None or not state.history:
        return None
    request = float(requested.time_limit_seconds)
    procs = float((requested.ntasks or 1) * (requested.cpus_per_task or 1))
    log_size = _log_size(key)
    features = features_from_state(state, request, procs, log_size)
    raw = target.raw(features)
    runs = recent_runs(home, series, 20) or [v for v, _, _ in state.history]
    max20 = max(runs) if runs else math.nan
    verdict = judge(home, series, raw, max20, request, procs,
                    same_size=lambda: recent_runs(home, series, 20, cpus=int(procs)))  # only for user_procs_max20
    estimate_target = model.targets.get(ESTIMATE_TARGET)
    estimate = None
    if estimate_target is not None:
        estimate = max(math.exp(min(estimate_target.raw(features), 700.0)), estimate_target.spec.floor)
    verdict["estimate"] = estimate
    return verdict


def decide_for(key: Mapping[str, Any], requested: Any, mode: str, home: str, *,
               enforce_time_min: bool = False, time_min_soft: bool = False) -> Any:
    """The policy's :class:`~airflow_provider_hpcai.policy.decision.Decision` for one piece of work.

    ``estimate`` mode needs only the series' last run times (history store); the other modes put
    the champion's run-time prediction through the guard's rules on its live state.

    :param enforce_time_min: ``[hpcai] advisor_enforce_time_min`` (unset: ``advisor_time_min_soft``):
        ``enforce`` also applies the q0.3 estimate as ``time_min`` to every job, cut or held (it is
        recorded either way).
    :param time_min_soft: ``[hpcai] advisor_time_min_soft``: the cluster treats ``--time-min`` as a
        soft limit; without it no estimate is applied as ``time_min`` (``estimate`` mode included).
    """
    from airflow_provider_hpcai.advisor.history import series_key
    from airflow_provider_hpcai.policy.decision import advise

    if mode == "estimate":
        return advise(key, requested, None, mode=mode, recent_runs=recent_runs(home, series_key(key), 2),
                      time_min_soft=time_min_soft)
    from airflow_provider_hpcai.advisor.cache import get_champion

    model = get_champion(home)
    return advise(key, requested, model, mode=mode, guard=guard_verdict(home, key, requested, model),
                  plan_with_estimate=enforce_time_min, time_min_soft=time_min_soft)
