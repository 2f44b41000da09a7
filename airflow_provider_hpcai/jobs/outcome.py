"""A finished job's result (what the operator returns through XCom) and its classified failure."""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.jobs.classify import FAILURE_KINDS, KIND_FAILURE, classify_failure
from airflow_provider_hpcai.jobs.states import Phase, phase_of

__all__ = ["JobOutcome", "build_result", "failure_for"]

_UNKNOWN_REASON = ("the scheduler no longer knows this job (lost in a controller crash, or purged "
                   "from its records); a retry submits it again")


def build_result(
    job_id: str,
    *,
    accounting: dict[str, Any],
    state: str,
    exit_code: int | None,
    requested: dict[str, Any],
    output_tail: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The task's result: accounting figures where accounting has them, the poller's otherwise.

    :param job_id: the job id.
    :param accounting: the job's accounting record (``{}`` when accounting is unavailable).
    :param state: the final state the poller saw.
    :param exit_code: the exit code the poller saw.
    :param requested: the resources asked for (``Resources.to_dict()``).
    :param output_tail: the end of the job's output (used for classification).
    :param extra: more keys to merge in (paths, tag, transport...).
    """
    final_state = accounting.get("state") or state
    if phase_of(final_state) is Phase.ACTIVE:  # accounting lags the controller: trust the poller
        final_state = state
    code = accounting.get("exit_code")
    if code in (None, 0) and exit_code not in (None, 0):  # some accounting reports 0 for failures
        code = exit_code
    result: dict[str, Any] = {
        "job_id": str(job_id),
        "state": final_state,
        "exit_code": code,
        "signal": accounting.get("signal"),
        "elapsed_seconds": accounting.get("elapsed_seconds"),
        "max_rss_bytes": accounting.get("max_rss_bytes"),
        "total_cpu_seconds": accounting.get("total_cpu_seconds"),
        "node_list": accounting.get("node_list"),
        "submit": accounting.get("submit"),
        "start": accounting.get("start"),
        "end": accounting.get("end"),
        # CPU %, memory %, GPUs and energy (Slurm: slurm.commands.efficiency); None without accounting.
        "efficiency": accounting.get("efficiency"),
        "requested": requested,
        "failure": None,
    }
    if accounting.get("het_components"):  # a Slurm heterogeneous job: each het group's own figures
        result["het_components"] = accounting["het_components"]
    if phase_of(final_state) is not Phase.SUCCEEDED or (result["exit_code"] not in (0, None)):
        kind = classify_failure(
            final_state,
            exit_code=result["exit_code"],
            signal=accounting.get("signal"),
            steps=accounting.get("steps"),
            requested_memory_bytes=requested.get("memory"),
            output_text=output_tail,
        )
        result["failure"] = FAILURE_KINDS.get(kind, "failed")
        if final_state == "UNKNOWN":
            result["reason"] = _UNKNOWN_REASON
    if extra:
        result.update(extra)
    return result


def failure_for(result: dict[str, Any], stderr_tail: str = "") -> exc.JobFailed | None:
    """The exception a result calls for, or ``None`` when the job succeeded."""
    kind = result.get("failure")
    if not kind:
        return None
    cls = KIND_FAILURE.get(kind, exc.JobFailed)
    return cls(result["job_id"], result["state"], exit_code=result.get("exit_code"), stderr_tail=stderr_tail,
               reason=result.get("reason"), result=result)


@dataclasses.dataclass
class JobOutcome:
    """A finished job as a backend reports it: the result and, when it failed, why.

    :param result: the JSON-safe result (:func:`build_result`), returned through XCom.
    :param failure: the exception to raise (``None``: the job succeeded). It carries the end of
        the job's error output, so the task log says what went wrong.
    """

    result: dict[str, Any]
    failure: exc.JobFailed | None = None

    @classmethod
    def of(cls, result: dict[str, Any], error_tail: str = "") -> JobOutcome:
        """The outcome of ``result``, its failure classified from ``result["failure"]``."""
        return cls(result, failure_for(result, error_tail))

    @property
    def succeeded(self) -> bool:
        return self.failure is None
