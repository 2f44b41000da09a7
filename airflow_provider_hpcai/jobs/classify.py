"""The outcome classifier: why a job failed, from its final state, step records and output.

Backends translate their scheduler's words into the shared states first
(:mod:`airflow_provider_hpcai.jobs.states`); this module turns a final state into one of the
provider's job exceptions, and gives each a short kind name (used in XCom and by escalation).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.jobs.states import normalise_state

__all__ = ["FAILURE_KINDS", "KIND_FAILURE", "classify_failure"]

#: Final states and the exception each raises when nothing more specific is known.
_STATE_FAILURE: dict[str, type[exc.JobFailed]] = {
    "TIMEOUT": exc.JobTimeout,
    "DEADLINE": exc.JobTimeout,
    "OUT_OF_MEMORY": exc.JobOutOfMemory,
    "NODE_FAIL": exc.JobNodeFailure,
    "BOOT_FAIL": exc.JobNodeFailure,
    "PREEMPTED": exc.JobPreempted,
    "CANCELLED": exc.JobCancelled,
}

#: Short names of failure kinds (used by the advisor's escalation and in XCom).
FAILURE_KINDS: dict[type[exc.JobFailed], str] = {
    exc.JobTimeout: "timeout",
    exc.JobOutOfMemory: "oom",
    exc.JobNodeFailure: "node_failure",
    exc.JobPreempted: "preempted",
    exc.JobCancelled: "cancelled",
    exc.JobFailed: "failed",
}
#: Kind name -> exception class.
KIND_FAILURE: dict[str, type[exc.JobFailed]] = {kind: cls for cls, kind in FAILURE_KINDS.items()}

#: What schedulers and runtimes print when they kill a job (matched in lower case).
#: "exceeded memory limit": 24.11's slurmstepd ("StepId=6.1 exceeded memory limit (433184768 > 33554432), being
#: killed"), where 22.05 says "Exceeded job memory limit".
_OOM_TEXT = ("exceeded job memory limit", "exceeded memory limit", "out of memory", "oom-kill", "memoryerror",
             "oom_kill")
_TIMEOUT_TEXT = ("due to time limit",)
_NODE_TEXT = ("due to node failure", "node failure")
_PREEMPT_TEXT = ("due to preemption",)


def classify_failure(
    state: str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    steps: list[dict[str, Any]] | None = None,
    requested_memory_bytes: int | None = None,
    output_text: str = "",
) -> type[exc.JobFailed]:
    """Decide why a job failed, from its final state, its step records and its output.

    The job line alone misleads: a job killed for its memory may end ``FAILED`` with signal 9
    while a step record shows the peak above the request.

    :param state: the job's final state.
    :param exit_code: the job's exit code.
    :param signal: the signal that ended it.
    :param steps: step records, each with ``state`` and ``max_rss_bytes``.
    :param requested_memory_bytes: memory requested per node, if known.
    :param output_text: the tail of the job's output (schedulers write their kill notices there).
    :return: the exception class to raise.
    """
    base = normalise_state(state)
    text = output_text.lower()
    steps = steps or []
    if base == "OUT_OF_MEMORY" or any(normalise_state(s.get("state")) == "OUT_OF_MEMORY" for s in steps):
        return exc.JobOutOfMemory
    if any(marker in text for marker in _OOM_TEXT):
        return exc.JobOutOfMemory
    if requested_memory_bytes and base in {"FAILED", "CANCELLED"}:
        peak = max((s.get("max_rss_bytes") or 0 for s in steps), default=0)
        if peak >= 0.9 * requested_memory_bytes and (signal == 9 or base == "CANCELLED" or exit_code in (137, -9)):
            return exc.JobOutOfMemory
    if base in _STATE_FAILURE and base != "CANCELLED":
        return _STATE_FAILURE[base]
    if any(marker in text for marker in _TIMEOUT_TEXT):
        return exc.JobTimeout
    if any(marker in text for marker in _NODE_TEXT):
        return exc.JobNodeFailure
    if any(marker in text for marker in _PREEMPT_TEXT):
        return exc.JobPreempted
    return _STATE_FAILURE.get(base, exc.JobFailed)
