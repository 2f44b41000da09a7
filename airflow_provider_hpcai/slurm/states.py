"""Slurm's job states: Slurm reports the shared vocabulary as it is.

The state table, :class:`JobStatus` and the outcome classifier live in the neutral job layer
(:mod:`airflow_provider_hpcai.jobs`); they are re-exported here under their earlier names. What
stays is Slurm's own: reading the exit code and signal out of its accounting records.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.jobs.classify import FAILURE_KINDS, classify_failure
from airflow_provider_hpcai.jobs.states import (
    STATE_PHASE,
    JobStatus,
    Phase,
    normalise_state,
    phase_of,
    shell_exit_code,
)

__all__ = ["FAILURE_KINDS", "STATE_PHASE", "JobStatus", "Phase", "classify_failure", "job_exit",
           "normalise_state", "phase_of", "shell_exit_code", "worst_element"]


def job_exit(record: dict[str, Any]) -> dict[str, Any]:
    """Give a parsed accounting record (sacct or slurmdbd REST) the shared ``exit_code`` meaning.

    A job ended by its time limit or ``scancel`` shows the signal only on its ``batch`` step
    (sacct: job ``TIMEOUT 0:0``, ``.batch CANCELLED 0:15``): an unsuccessful job without a signal
    of its own takes the batch step's. When the shell in that step caught the signal first, the
    step records its exit status instead (26.05: job ``TIMEOUT 0``, ``.batch FAILED 143``, no
    signal): a status of 129-192 there is 128 + the signal. Changes ``record`` in place and
    returns it.
    """
    signal = record.get("signal")
    if not signal and phase_of(record.get("state")) is Phase.FAILED:
        batch = next((s for s in record.get("steps") or [] if s.get("step") == "batch"), None)
        signal = batch.get("signal") if batch else None
        status = batch.get("exit_code") if batch else None
        if not signal and not record.get("exit_code") and isinstance(status, int) and 128 < status <= 192:
            signal = status - 128
    record["signal"] = signal or None
    record["exit_code"] = shell_exit_code(record.get("exit_code"), signal)
    for step in record.get("steps") or []:
        step["exit_code"] = shell_exit_code(step.get("exit_code"), step.get("signal"))
    return record


def worst_element(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The element an array job reports: active before failed before unknown before succeeded,
    the first of ``records`` among equals (give them in index order: the first failed element
    names the exit code)."""
    order = {Phase.ACTIVE: 0, Phase.FAILED: 1, Phase.UNKNOWN: 2, Phase.SUCCEEDED: 3}
    return min(records, key=lambda record: order[phase_of(record.get("state"))])
