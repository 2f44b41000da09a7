"""More memory after an OOM kill, more time after a timeout: bounded, pure."""

from __future__ import annotations

import dataclasses
from typing import Literal

from airflow_provider_hpcai.exceptions import HpcAiError, InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources

__all__ = ["Ceilings", "EscalationExhaustedError", "escalate"]


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
