"""More memory after an OOM kill, more time after a timeout: bounded, pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from airflow_provider_hpcai.exceptions import HpcAiError, InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources

__all__ = ["Ceilings", "EscalationExhaustedError", "escalate", "undo_cut"]


class EscalationExhaustedError(HpcAiError):
    """The resource is already at its ceiling: retrying with the same value would fail the same way.

    Raise the ceiling (``[hpcai]`` or the operator's ``ceilings``), or fix the job.
    """


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """Bounds and factors of escalation.

    :param max_memory_bytes: never ask for more memory than this.
    :param max_time_s: never ask for more time than this (e.g. the partition's MaxTime).
    :param memory_factor: multiply memory by this per OOM retry.
    :param time_factor: multiply time by this per timeout retry.
    :param default_memory_bytes: starting point when the task asked for no memory and no peak is known.
    :param default_time_s: starting point when the task asked for no time limit.
    """

    max_memory_bytes: int = 512 * 1024**3
    max_time_s: int = 7 * 86400
    memory_factor: float = 2.0
    time_factor: float = 1.5
    default_memory_bytes: int = 4 * 1024**3
    default_time_s: int = 3600

    def __post_init__(self) -> None:
        if self.memory_factor <= 1 or self.time_factor <= 1:
            raise InvalidJobSpecError("escalation factors must be above 1 (e.g. memory_factor=2, time_factor=1.5)")


def escalate(
    requested: Resources,
    failure: Literal["oom", "timeout"],
    attempt: int,
    ceilings: Ceilings | None = None,
    *,
    observed_peak_bytes: int | None = None,
) -> Resources:
    """The resources for retry number ``attempt`` after ``failure``.

    Memory grows by ``memory_factor ** attempt`` (from the larger of the request and the
    observed peak), time by ``time_factor ** attempt``; both stop at their ceiling.

    :param requested: the task's original request (not the previous retry's).
    :param failure: ``"oom"`` or ``"timeout"``.
    :param attempt: 1 for the first retry, 2 for the second...
    :param ceilings: bounds and factors.
    :param observed_peak_bytes: the killed job's peak memory, when accounting knows it.
    :raises EscalationExhaustedError: when the value is already at its ceiling.
    :raises InvalidJobSpecError: for an unknown failure kind or an attempt below 1.
    """
    ceilings = ceilings or Ceilings()
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidJobSpecError(f"attempt must be 1 or more (the retry number), got {attempt!r}")
    if failure == "oom":
        base = max(requested.memory_bytes or 0, observed_peak_bytes or 0) or ceilings.default_memory_bytes
        if base >= ceilings.max_memory_bytes:
            raise EscalationExhaustedError(
                f"memory is already {base} bytes, at the ceiling of {ceilings.max_memory_bytes}; "
                "raise the ceiling or reduce the job's memory use"
            )
        grown = min(int(base * ceilings.memory_factor**attempt), ceilings.max_memory_bytes)
        return requested.replace(memory=grown)
    if failure == "timeout":
        base = requested.time_limit_seconds or ceilings.default_time_s
        if base >= ceilings.max_time_s:
            raise EscalationExhaustedError(
                f"time limit is already {base} s, at the ceiling of {ceilings.max_time_s} s; "
                "raise the ceiling or make the job checkpoint and resume"
            )
        grown = min(int(base * ceilings.time_factor**attempt), ceilings.max_time_s)
        changes: dict[str, int] = {"time_limit": grown}
        if requested.time_min_seconds and requested.time_min_seconds > grown:
            changes["time_min"] = grown
        return requested.replace(**changes)
    raise InvalidJobSpecError(f"failure must be 'oom' or 'timeout', got {failure!r}")


def undo_cut(current: Resources, asked: Resources, failure: str,
             submitted: Mapping[str, Any] | None) -> Resources | None:
    """The user's own time limit (or memory) when the advisor's cut is what the previous try ran out of.

    The previous try was submitted with less than the user asked for (``enforce``) and ended
    ``timeout`` (or ``oom``): the cut failed, not the user's request, so the retry runs with the
    request itself rather than an escalation of the cut (the evaluation's kill-and-resubmit; the
    guard has already counted the kill). A timeout of the request itself escalates as usual.

    :param current: this try's resources (after the policy: the request, or a cut again).
    :param asked: the user's request (before the advisor).
    :param failure: the previous try's failure class.
    :param submitted: the previous try's submitted resources (``Resources.to_dict()``).
    :return: ``current`` with the user's value restored, or ``None`` when the cut is not the cause.
    """
    field = {"timeout": "time_limit", "oom": "memory"}.get(failure)
    ran_with = (submitted or {}).get(field) if field else None
    if not isinstance(ran_with, int):
        return None
    user = asked.time_limit_seconds if field == "time_limit" else asked.memory_bytes
    now = current.time_limit_seconds if field == "time_limit" else current.memory_bytes
    if user is None or ran_with >= user:
        return None
    changes: dict[str, Any] = {field: max(user, now or 0)}
    if field == "time_limit":
        changes["time_min"] = asked.time_min_seconds
    return current.replace(**changes)
