"""What the advisor decides for one task: pure functions, no Airflow, no MLflow.

:func:`advise` turns a task's requested :class:`~airflow_provider_hpcai.resources.Resources`
and a compact model's prediction into a :class:`Decision`:

* ``off``: nothing is predicted; the request stands.
* ``advise``: the prediction is recorded next to the request; the request stands.
* ``enforce``: the time limit and memory are replaced by the prediction, kept within
  :class:`Bounds` (never below the floors, never above the ceilings or the partition's
  limits, and by default never above the user's own request).
* ``estimate``: the time limit stays; the prediction becomes ``time_min`` so the backfill
  scheduler can plan with it (no job is killed earlier than the user asked).

A model that is missing, or raises, leaves the request as it is, with the reason recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
    """

    requested: Resources
    predicted: dict[str, Any]
    applied: Resources
    model_version: str | None
    mode: str
    reason: str

    @property
    def changed(self) -> bool:
        return self.applied != self.requested

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored on the task as ``hpcai_decision``)."""
        return {
            "requested": self.requested.to_dict(),
            "predicted": dict(self.predicted),
            "applied": self.applied.to_dict(),
            "model_version": self.model_version,
            "mode": self.mode,
            "reason": self.reason,
        }


def advise(
    key: Mapping[str, Any],
    requested: Resources,
    model: Any,
    *,
    mode: str = "advise",
    bounds: Bounds | None = None,
) -> Decision:
    """Decide the resources of one task.

    :param key: the operator's ``advisor_key()`` (``dag_id``, ``task_id``, ``owner``, ``kernel``...).
    :param requested: the task's requested resources.
    :param model: a compact model (anything with ``predict(key, requested) -> dict``), or ``None``.
    :param mode: ``off``, ``advise``, ``enforce`` or ``estimate``; anything else counts as ``advise``.
    :param bounds: floors and ceilings for enforced values.
    """
    bounds = bounds or Bounds()
    if mode not in MODES:
        mode_used, note = "advise", f"unknown advisor mode {mode!r}, treated as 'advise'; "
    else:
        mode_used, note = mode, ""
    if mode_used == "off":
        return Decision(requested, {}, requested, None, "off", "advisor is off")
    if model is None:
        return Decision(requested, {}, requested, None, mode_used, note + "no model yet; kept the request")
    try:
        prediction = model.predict(key, requested)
    except Exception as error:  # a broken model must never break the task
        return Decision(requested, {}, requested, None, mode_used,
                        note + f"model failed ({type(error).__name__}); kept the request")
    predicted = {"time_limit": prediction.get("time_limit"), "memory": prediction.get("memory")}
    version = prediction.get("version")
    reasons = prediction.get("reasons") or {}
    if mode_used == "advise" or all(v is None for v in predicted.values()):
        why = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "prediction recorded"
        return Decision(requested, predicted, requested, version, mode_used, note + why)
    changes: dict[str, Any] = {}
    time_pred = predicted["time_limit"]
    if time_pred is not None:
        limit = bounds.clamp("time_limit", time_pred, requested.time_limit_seconds, requested.partition)
        if mode_used == "enforce" and limit != requested.time_limit_seconds:
            changes["time_limit"] = limit
            if requested.time_min_seconds and requested.time_min_seconds > limit:
                changes["time_min"] = limit
        elif requested.time_limit_seconds is None or limit < requested.time_limit_seconds:
            changes["time_min"] = limit
    if mode_used == "enforce" and predicted["memory"] is not None:
        memory = bounds.clamp("memory", predicted["memory"], requested.memory_bytes, requested.partition)
        if memory != requested.memory_bytes:
            changes["memory"] = memory
    applied = requested.replace(**changes) if changes else requested
    parts = [f"{k}: {v}" for k, v in reasons.items()]
    return Decision(requested, predicted, applied, version, mode_used, note + ("; ".join(parts) or "applied"))
