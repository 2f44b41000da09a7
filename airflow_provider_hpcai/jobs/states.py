"""The job vocabulary every backend translates into: states, phases, one status record.

The state names are the ones Slurm made common (``PENDING``, ``RUNNING``, ``COMPLETED``,
``OUT_OF_MEMORY``...): each backend maps its own scheduler's words onto them (Slurm reports them
as they are, Kubernetes and Grid Engine through a table of their own), and one table here says
what each means for a waiting task. Nothing in this module knows a scheduler.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["STATE_PHASE", "JobStatus", "Phase", "normalise_state", "phase_of", "shell_exit_code"]


class Phase(str, enum.Enum):
    """What a job state means for the task waiting on it."""

    ACTIVE = "active"  # pending, running, completing: keep waiting
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # not (or no longer) known to the scheduler


#: Every job state of the shared vocabulary, by the phase it means.
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


def normalise_state(raw: str | list[str] | None) -> str:
    """Reduce a reported state to its base name.

    Schedulers add detail (``"CANCELLED by 0"``, ``"RUNNING+"``) and some report a list
    (``["FAILED", "..."]``); the first word is the state.
    """
    if raw is None:
        return "UNKNOWN"
    if isinstance(raw, list):
        raw = raw[0] if raw else "UNKNOWN"
    word = str(raw).strip().split(" ")[0].rstrip("+").upper()
    return word or "UNKNOWN"


def phase_of(state: str | list[str] | None) -> Phase:
    """The phase a (possibly decorated) state means."""
    return STATE_PHASE.get(normalise_state(state), Phase.UNKNOWN)


def shell_exit_code(return_code: int | None, signal: int | None) -> int | None:
    """A finished job's ``exit_code``, with one meaning on every backend.

    It is the batch script's exit status as a shell reports it: ``0``-``255`` when the script
    exited, ``128 + N`` when signal ``N`` ended it (bash's ``$?``, ``srun``, and Kubernetes' 137
    for a killed container all say the same); ``None`` when nobody knows.

    :param return_code: the exit status the scheduler reports (ignored when a signal ended the job).
    :param signal: the signal that ended the job, if any.
    """
    if signal:
        return 128 + signal
    return return_code


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A job's state as one status query saw it.

    :param job_id: the backend's job id (for array jobs, the array's master id).
    :param state: base state name of the shared vocabulary (``RUNNING``...).
    :param reason: the scheduler's reason (``Resources``, ``Priority``...), if any.
    :param exit_code: the exit code once finished, if known.
    :param tag: the provider tag the job carries, if the scheduler reports it.
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
