"""What the advisor decides for one task: pure functions, no Airflow, no MLflow.

:func:`advise` turns a task's requested :class:`~airflow_provider_hpcai.resources.Resources`
and a compact model's prediction into a :class:`Decision`:

* ``off``: nothing is predicted; the request stands.
* ``advise``: the prediction is recorded next to the request; the request stands.
* ``enforce``: the time limit and memory are replaced by the prediction, kept within
  :class:`Bounds` (never below the floors, never above the ceilings or the partition's
  limits, and by default never above the user's own request). With a ``guard`` verdict
  (:func:`~airflow_provider_hpcai.policy.live.guard_verdict`) the time limit is the guard's
  (the request where it holds the job back); with ``plan_with_estimate`` ``time_min`` is its
  q0.3 run-time estimate for every job, cut or held (never above the limit), as the
  evaluation's enforce replay plans.
* ``estimate``: the time limit stays; ``time_min`` is the mean of the series' last two run
  times (``recent_runs``; floor 60 s, never above the request), so the backfill scheduler can
  plan with it. No model is needed.

``time_min`` is applied (``estimate`` mode, or ``enforce`` with ``plan_with_estimate``) only
where the site states that its Slurm treats ``--time-min`` as a soft limit
(``time_min_soft``: ``SchedulerParameters=time_min_as_soft_limit``). Without it a job the
backfill scheduler starts gets a *hard* limit of ``time_min`` (22.05.8 and 24.11.5 give exactly
``time_min``; ``tests/integration/test_time_min.py``) and is killed there: an estimate would
become a kill for every job that runs past it. Then the estimate is recorded, not applied.

A model that is missing, or raises, leaves the request as it is, with the reason recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from airflow_provider_hpcai.resources import Resources

__all__ = ["MODES", "Bounds", "Decision", "Mode", "advise"]

Mode = Literal["off", "advise", "enforce", "estimate"]
MODES: tuple[str, ...] = ("off", "advise", "enforce", "estimate")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Where enforced values must stay.

    :param min_time_s: never advise a time limit below this.
    :param min_memory_bytes: never advise memory below this.
    :param max_time_s: ceiling for time limits (``None``: none).
    :param max_memory_bytes: ceiling for memory (``None``: none).
    :param partition_limits: per partition, ``{"max_time_s": ..., "max_memory_bytes": ...}``.
    :param allow_raise: may an enforced value exceed the user's request (default: no).
    """

    min_time_s: int = 60
    min_memory_bytes: int = 256 * 1024**2
    max_time_s: int | None = None
    max_memory_bytes: int | None = None
    partition_limits: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
    allow_raise: bool = False

    def clamp(self, field: str, value: float, requested: int | None, partition: str | None) -> int:
        """``value`` kept within the floor, the ceilings and (unless raising is allowed) the request."""
        floor = self.min_time_s if field == "time_limit" else self.min_memory_bytes
        ceiling = self.max_time_s if field == "time_limit" else self.max_memory_bytes
        limits = self.partition_limits.get(partition or "", {})
        part_max = limits.get("max_time_s" if field == "time_limit" else "max_memory_bytes")
        top = min(c for c in (ceiling, part_max, None if self.allow_raise else requested, float("inf")) if c)
        return int(max(floor, min(value, top)))


@dataclasses.dataclass(frozen=True)
class Decision:
    """The advisor's decision for one task.

    :param requested: what the user asked for.
    :param predicted: the model's values (``time_limit`` seconds, ``memory`` bytes; ``None`` = none).
    :param applied: what the task will run with.
    :param model_version: the model that predicted, if any.
    :param mode: the advisor mode in force.
    :param reason: why ``applied`` is what it is.
    :param guard: the guard's verdict on the time limit (see :mod:`~airflow_provider_hpcai.advisor.live_guard`),
        when it judged the task.
    """

    requested: Resources
    predicted: dict[str, Any]
    applied: Resources
    model_version: str | None
    mode: str
    reason: str
    guard: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.applied != self.requested

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored on the task as ``hpcai_decision``)."""
        out = {
            "requested": self.requested.to_dict(),
            "predicted": dict(self.predicted),
            "applied": self.applied.to_dict(),
            "model_version": self.model_version,
            "mode": self.mode,
            "reason": self.reason,
        }
        if self.guard is not None:
            out["guard"] = dict(self.guard)
        return out


#: Why an estimate is recorded but not applied as ``time_min`` (see the module docstring).
HARD_TIME_MIN = ("not applied: without SchedulerParameters=time_min_as_soft_limit Slurm kills a backfilled job at "
                 "its time_min; set that and [hpcai] advisor_time_min_soft = True")


def _estimate_decision(requested: Resources, recent_runs: Sequence[float] | None, bounds: Bounds,
                       note: str, soft: bool) -> Decision:
    """``estimate`` mode: ``time_min`` = the mean of the series' last two run times (floor, never above the request)."""
    runs = [float(r) for r in (recent_runs or ())[:2] if r and r > 0]
    if not runs:
        return Decision(requested, {}, requested, None, "estimate",
                        note + "time_min: no finished run of this series yet; kept the request")
    estimate = max(float(bounds.min_time_s), sum(runs) / len(runs))
    top = requested.time_limit_seconds
    if top is not None:
        estimate = min(estimate, float(top))
    value = int(estimate)
    predicted = {"time_min": value}
    reason = f"time_min: mean of the last {len(runs)} run time(s)"
    if not soft:
        return Decision(requested, predicted, requested, None, "estimate", f"{note}{reason}, {HARD_TIME_MIN}")
    if value == requested.time_min_seconds:
        return Decision(requested, predicted, requested, None, "estimate", note + reason)
    return Decision(requested, predicted, requested.replace(time_min=value), None, "estimate", note + reason)


def advise(
    key: Mapping[str, Any],
    requested: Resources,
    model: Any,
    *,
    mode: str = "advise",
    bounds: Bounds | None = None,
    guard: Mapping[str, Any] | None = None,
    recent_runs: Sequence[float] | None = None,
    plan_with_estimate: bool = False,
    time_min_soft: bool = False,
) -> Decision:
    """Decide the resources of one task.

    :param key: the operator's ``advisor_key()`` (``dag_id``, ``task_id``, ``owner``, ``kernel``...).
    :param requested: the task's requested resources.
    :param model: a compact model (anything with ``predict(key, requested) -> dict``), or ``None``.
    :param mode: ``off``, ``advise``, ``enforce`` or ``estimate``; anything else counts as ``advise``.
    :param bounds: floors and ceilings for enforced values.
    :param guard: the guard's verdict on the run time (``limit``: the advised limit or ``None``,
        ``held``: why not, ``estimate``: q0.3 run time or ``None``); it replaces the model's time
        limit in ``advise`` and ``enforce`` modes.
    :param recent_runs: the series' last run times, newest first (``estimate`` mode).
    :param plan_with_estimate: ``enforce`` also sets ``time_min`` to the guard's q0.3 estimate
        (``[hpcai] advisor_enforce_time_min``, unset: ``advisor_time_min_soft``). Only with
        ``time_min_soft``: otherwise Slurm kills a backfilled job at its ``time_min``, and about
        70 % of jobs run past a q0.3 estimate.
    :param time_min_soft: the site's Slurm treats ``--time-min`` as a soft limit
        (``[hpcai] advisor_time_min_soft``); without it no estimate is applied as ``time_min``.
    """
    bounds = bounds or Bounds()
    if mode not in MODES:
        mode_used, note = "advise", f"unknown advisor mode {mode!r}, treated as 'advise'; "
    else:
        mode_used, note = mode, ""
    if mode_used == "off":
        return Decision(requested, {}, requested, None, "off", "advisor is off")
    if mode_used == "estimate":
        return _estimate_decision(requested, recent_runs, bounds, note, time_min_soft)
    if model is None:
        return Decision(requested, {}, requested, None, mode_used, note + "no model yet; kept the request")
    try:
        prediction = model.predict(key, requested)
    except Exception as error:  # a broken model must never break the task
        return Decision(requested, {}, requested, None, mode_used,
                        note + f"model failed ({type(error).__name__}); kept the request")
    predicted = {"time_limit": prediction.get("time_limit"), "memory": prediction.get("memory")}
    version = prediction.get("version")
    reasons = dict(prediction.get("reasons") or {})
    estimate = None
    if guard is not None:
        predicted["time_limit"] = guard.get("limit")
        estimate = guard.get("estimate")
        held = guard.get("held")
        reasons["time_limit"] = (f"guard holds it back ({held}); kept the request" if held
                                 else f"guard: candidate {guard.get('chosen')} (0 model, 1 max-of-20)")
        if estimate is not None:
            predicted["time_min"] = estimate
    plans = mode_used == "enforce" and plan_with_estimate and estimate is not None
    if mode_used == "advise" or (all(predicted.get(k) is None for k in ("time_limit", "memory")) and not plans):
        why = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "prediction recorded"
        return Decision(requested, predicted, requested, version, mode_used, note + why,
                        None if guard is None else dict(guard))
    changes: dict[str, Any] = {}
    limit = requested.time_limit_seconds
    time_pred = predicted["time_limit"]
    if time_pred is not None:
        cut = bounds.clamp("time_limit", time_pred, requested.time_limit_seconds, requested.partition)
        if cut != limit:
            changes["time_limit"] = limit = cut
            if requested.time_min_seconds and requested.time_min_seconds > cut:
                changes["time_min"] = cut
    if plans and not time_min_soft:
        reasons["time_min"] = HARD_TIME_MIN
    elif plans:  # every job plans with its estimate, cut or held (the replay's enforce); never above the limit
        value = int(max(bounds.min_time_s, estimate if limit is None else min(estimate, limit)))
        if value != requested.time_min_seconds:
            changes["time_min"] = value
            reasons.setdefault("time_min", "q0.3 run-time estimate (the scheduler plans with it; the limit kills)")
    if mode_used == "enforce" and predicted["memory"] is not None:
        memory = bounds.clamp("memory", predicted["memory"], requested.memory_bytes, requested.partition)
        if memory != requested.memory_bytes:
            changes["memory"] = memory
    applied = requested.replace(**changes) if changes else requested
    parts = [f"{k}: {v}" for k, v in reasons.items()]
    return Decision(requested, predicted, applied, version, mode_used, note + ("; ".join(parts) or "applied"),
                    None if guard is None else dict(guard))
