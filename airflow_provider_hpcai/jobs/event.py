"""The one event a job trigger fires, typed; its payload is what ``execute_complete`` receives."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from airflow_provider_hpcai.jobs.output import ResumeState
from airflow_provider_hpcai.jobs.states import JobStatus, Phase

__all__ = ["EventStatus", "JobEvent"]

EventStatus = Literal["success", "failed", "unknown", "error"]
#: ``error_type`` of an error event: the scheduler stayed unreachable past the outage budget.
CONTROLLER_UNAVAILABLE = "controller_unavailable"
#: ``error_type`` of an error event: the wait itself broke (a bug, an unexpected answer).
TRIGGER_ERROR = "trigger_error"


@dataclasses.dataclass
class JobEvent:
    """What a trigger reports when its job ended (or the wait failed).

    :param status: ``success``/``failed``/``unknown`` (the job's phase) or ``error`` (the wait).
    :param job_id: the job.
    :param state: its final state (shared vocabulary).
    :param exit_code: its exit code, when known.
    :param reason: the scheduler's reason, if any.
    :param message: what went wrong (``error`` events).
    :param error_type: ``controller_unavailable`` or ``trigger_error`` (``error`` events).
    :param resume: how much output the trigger showed (a :class:`ResumeState` as a dict).
    :param echo: the operator's data, handed back unchanged.
    """

    status: EventStatus
    job_id: str
    state: str | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str | None = None
    error_type: str | None = None
    resume: dict[str, Any] = dataclasses.field(default_factory=dict)
    echo: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def ended(cls, status: JobStatus, *, resume: ResumeState, echo: dict[str, Any]) -> JobEvent:
        outcome: EventStatus = {Phase.SUCCEEDED: "success", Phase.FAILED: "failed"}.get(status.phase, "unknown")  # type: ignore[assignment]
        return cls(outcome, status.job_id, status.state, status.exit_code, status.reason,
                   resume=resume.to_dict(), echo=echo)

    @classmethod
    def error(cls, job_id: str, message: str, error_type: str, *, resume: ResumeState,
              echo: dict[str, Any]) -> JobEvent:
        return cls("error", job_id, message=message, error_type=error_type, resume=resume.to_dict(), echo=echo)

    def to_payload(self) -> dict[str, Any]:
        """The event's JSON payload (with the ``stdout_offset``/``stderr_offset`` of earlier versions)."""
        payload = dataclasses.asdict(self)
        if self.status == "error":
            del payload["state"], payload["exit_code"]
        else:
            del payload["message"], payload["error_type"]
        legacy = ResumeState.from_dict(self.resume).legacy_offsets()
        payload["stdout_offset"], payload["stderr_offset"] = legacy["stdout"], legacy["stderr"]
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JobEvent:
        """Read an event, including one fired by an earlier version's trigger."""
        resume = payload.get("resume")
        if not resume:
            resume = ResumeState.from_legacy({"stdout": payload.get("stdout_offset") or 0,
                                              "stderr": payload.get("stderr_offset") or 0}).to_dict()
        return cls(
            status=payload.get("status", "unknown"),
            job_id=str(payload.get("job_id")),
            state=payload.get("state"),
            exit_code=payload.get("exit_code"),
            reason=payload.get("reason") or "",
            message=payload.get("message"),
            error_type=payload.get("error_type"),
            resume=resume,
            echo=payload.get("echo") or {},
        )

    def resume_state(self) -> ResumeState:
        return ResumeState.from_dict(self.resume)
