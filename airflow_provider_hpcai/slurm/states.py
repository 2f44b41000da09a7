"""Slurm job states as data, and failure classification from accounting records.

One table maps every Slurm state name to what it means for a waiting task; one function
turns the accounting of a finished job into the provider's exception for it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from airflow_provider_hpcai import exceptions as exc

__all__ = ["FAILURE_KINDS", "STATE_PHASE", "JobStatus", "Phase", "classify_failure", "job_exit", "phase_of",
           "shell_exit_code"]


class Phase(str, enum.Enum):
    """What a Slurm state means for the task waiting on it."""

    ACTIVE = "active"  # pending, running, completing: keep waiting
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # not (or no longer) known to the controller


#: Every job state Slurm reports (squeue, sacct, slurmrestd), by the phase it means.
STATE_PHASE: dict[str, Phase] = {
    "PENDING": Phase.ACTIVE,
    "CONFIGURING": Phase.ACTIVE,
    "RUNNING": Phase.ACTIVE,
    "COMPLETING": Phase.ACTIVE,
    "SUSPENDED": Phase.ACTIVE,
    "REQUEUED": Phase.ACTIVE,
    "REQUEUE_FED": Phase.ACTIVE,
    "REQUEUE_HOLD": Phase.ACTIVE,
    "RESIZING": Phase.ACTIVE,
    "SIGNALING": Phase.ACTIVE,
    "STAGE_OUT": Phase.ACTIVE,
    "STOPPED": Phase.ACTIVE,
    "RESV_DEL_HOLD": Phase.ACTIVE,
    "POWER_UP_NODE": Phase.ACTIVE,
    "UPDATE_DB": Phase.ACTIVE,
    "COMPLETED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "CANCELLED": Phase.FAILED,
    "TIMEOUT": Phase.FAILED,
    "DEADLINE": Phase.FAILED,
    "OUT_OF_MEMORY": Phase.FAILED,
    "NODE_FAIL": Phase.FAILED,
    "BOOT_FAIL": Phase.FAILED,
    "PREEMPTED": Phase.FAILED,
    "SPECIAL_EXIT": Phase.FAILED,
    "REVOKED": Phase.FAILED,
}

#: Final states and the exception each raises when accounting adds nothing more specific.
_STATE_FAILURE: dict[str, type[exc.SlurmJobFailed]] = {
    "TIMEOUT": exc.SlurmJobTimeout,
    "DEADLINE": exc.SlurmJobTimeout,
    "OUT_OF_MEMORY": exc.SlurmOutOfMemory,
    "NODE_FAIL": exc.SlurmNodeFailure,
    "BOOT_FAIL": exc.SlurmNodeFailure,
    "PREEMPTED": exc.SlurmJobPreempted,
    "CANCELLED": exc.SlurmJobCancelled,
}

#: Short names of failure kinds (used by the advisor's escalation and in XCom).
FAILURE_KINDS: dict[type[exc.SlurmJobFailed], str] = {
    exc.SlurmJobTimeout: "timeout",
    exc.SlurmOutOfMemory: "oom",
    exc.SlurmNodeFailure: "node_failure",
    exc.SlurmJobPreempted: "preempted",
    exc.SlurmJobCancelled: "cancelled",
    exc.SlurmJobFailed: "failed",
}

_OOM_TEXT = ("exceeded job memory limit", "out of memory", "oom-kill", "memoryerror", "oom_kill")
_TIMEOUT_TEXT = ("due to time limit",)
_NODE_TEXT = ("due to node failure", "node failure")
_PREEMPT_TEXT = ("due to preemption",)


def normalise_state(raw: str | list[str] | None) -> str:
    """Reduce a reported state to its base name.

    Slurm adds detail (``"CANCELLED by 0"``, ``"RUNNING+"``) and slurmrestd >= 0.0.40 reports
    a list (``["FAILED", "..."]``); the first word is the state.
    """
    if raw is None:
        return "UNKNOWN"
    if isinstance(raw, list):
        raw = raw[0] if raw else "UNKNOWN"
    word = str(raw).strip().split(" ")[0].rstrip("+").upper()
    return word or "UNKNOWN"


def phase_of(state: str | list[str] | None) -> Phase:
    """The phase a (possibly decorated) Slurm state means."""
    return STATE_PHASE.get(normalise_state(state), Phase.UNKNOWN)


def shell_exit_code(return_code: int | None, signal: int | None) -> int | None:
    """A finished job's ``exit_code``, with one meaning on every Slurm version and transport.

    It is the batch script's exit status as a shell reports it: ``0``-``255`` when the script
    exited, ``128 + N`` when signal ``N`` ended it (bash's ``$?``, ``srun``, and Kubernetes' 137
    for a killed container all say the same); ``None`` when nobody knows. The signal number
    itself is the result's ``signal``. Slurm spells this differently everywhere: sacct ``0:9``,
    22.05's REST the raw wait status ``9``, 24.11's REST ``{"status": ["SIGNALED"], "signal":
    {"id": 9}}`` with ``return_code`` 0 or unset.

    :param return_code: the exit status Slurm reports (ignored when a signal ended the job).
    :param signal: the signal that ended the job, if any.
    """
    if signal:
        return 128 + signal
    return return_code


def job_exit(record: dict[str, Any]) -> dict[str, Any]:
    """Give a parsed accounting record (sacct or slurmdbd REST) the shared ``exit_code`` meaning.

    A job ended by its time limit or ``scancel`` shows the signal only on its ``batch`` step
    (sacct: job ``TIMEOUT 0:0``, ``.batch CANCELLED 0:15``): an unsuccessful job without a signal
    of its own takes the batch step's. Changes ``record`` in place and returns it.
    """
    signal = record.get("signal")
    if not signal and phase_of(record.get("state")) is Phase.FAILED:
        batch = next((s for s in record.get("steps") or [] if s.get("step") == "batch"), None)
        signal = batch.get("signal") if batch else None
    record["signal"] = signal or None
    record["exit_code"] = shell_exit_code(record.get("exit_code"), signal)
    for step in record.get("steps") or []:
        step["exit_code"] = shell_exit_code(step.get("exit_code"), step.get("signal"))
    return record


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A job's state as one status query saw it.

    :param job_id: the Slurm job id (for array jobs, the array's master id).
    :param state: base state name (``RUNNING``...).
    :param reason: the scheduler's reason (``Resources``, ``Priority``...), if any.
    :param exit_code: the exit code once finished, if known.
    :param tag: the provider tag found in the job's comment, if any.
    """

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    tag: str | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def classify_failure(
    state: str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    steps: list[dict[str, Any]] | None = None,
    requested_memory_bytes: int | None = None,
    output_text: str = "",
) -> type[exc.SlurmJobFailed]:
    """Decide why a job failed, from its final state, its step records and its output.

    The job line alone misleads: a job killed by ``OverMemoryKill`` ends ``FAILED`` with
    signal 9 while its ``.batch`` step ends ``CANCELLED`` with MaxRSS above the request.

    :param state: the job's final state.
    :param exit_code: the job's exit code.
    :param signal: the signal that ended it (the part after ``:`` in sacct's ``ExitCode``).
    :param steps: step records, each with ``state`` and ``max_rss_bytes``.
    :param requested_memory_bytes: memory requested per node, if known.
    :param output_text: the tail of the job's stdout/stderr (Slurm writes its kill notices there).
    :return: the exception class to raise.
    """
    base = normalise_state(state)
    text = output_text.lower()
    steps = steps or []
    if base == "OUT_OF_MEMORY" or any(normalise_state(s.get("state")) == "OUT_OF_MEMORY" for s in steps):
        return exc.SlurmOutOfMemory
    if any(marker in text for marker in _OOM_TEXT):
        return exc.SlurmOutOfMemory
    if requested_memory_bytes and base in {"FAILED", "CANCELLED"}:
        peak = max((s.get("max_rss_bytes") or 0 for s in steps), default=0)
        if peak >= 0.9 * requested_memory_bytes and (signal == 9 or base == "CANCELLED" or exit_code in (137, -9)):
            return exc.SlurmOutOfMemory
    if base in _STATE_FAILURE and base != "CANCELLED":
        return _STATE_FAILURE[base]
    if any(marker in text for marker in _TIMEOUT_TEXT):
        return exc.SlurmJobTimeout
    if any(marker in text for marker in _NODE_TEXT):
        return exc.SlurmNodeFailure
    if any(marker in text for marker in _PREEMPT_TEXT):
        return exc.SlurmJobPreempted
    return _STATE_FAILURE.get(base, exc.SlurmJobFailed)
