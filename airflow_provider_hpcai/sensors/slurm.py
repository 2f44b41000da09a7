"""Wait for a Slurm job submitted elsewhere (a script, another system, another DAG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.bases.sensor import BaseSensorOperator

from airflow_provider_hpcai import config
from airflow_provider_hpcai.exceptions import ControllerUnavailableError, HpcAiError
from airflow_provider_hpcai.jobs.event import CONTROLLER_UNAVAILABLE, JobEvent
from airflow_provider_hpcai.jobs.outcome import build_result, failure_for
from airflow_provider_hpcai.jobs.states import Phase

__all__ = ["SlurmJobSensor"]


class SlurmJobSensor(BaseSensorOperator):
    """Succeed when a Slurm job completes; fail (classified) when it fails.

    :param job_id: the Slurm job id (templated).
    :param slurm_conn_id: the Slurm connection.
    :param deferrable: wait in the triggerer, sharing the batched poller.
    """

    template_fields: Sequence[str] = ("job_id",)

    def __init__(self, *, job_id: str, slurm_conn_id: str = "slurm_default", deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.slurm_conn_id = slurm_conn_id
        self.deferrable = config.default_deferrable() if deferrable is None else deferrable

    def _hook(self):  # type: ignore[no-untyped-def]
        from airflow_provider_hpcai.hooks.slurm import SlurmHook

        return SlurmHook(self.slurm_conn_id)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger

        self.defer(
            trigger=SlurmJobTrigger(job_id=str(self.job_id), slurm_conn_id=self.slurm_conn_id,
                                    poll_interval=self.poke_interval,
                                    max_poll_interval=max(self.poke_interval, config.get_float("max_poll_interval")),
                                    outage_budget=config.get_float("outage_budget")),
            method_name="execute_complete",
        )

    def poke(self, context: Any) -> bool:
        status = self._hook().get_status(str(self.job_id))
        if status is None or status.phase is Phase.ACTIVE:
            self.log.info("Slurm job %s is %s", self.job_id, status.state if status else "not yet visible")
            return False
        self._raise_if_failed(status.state, status.exit_code)
        return True

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        job_event = JobEvent.from_payload(event)
        if job_event.status == "error":
            if job_event.error_type == CONTROLLER_UNAVAILABLE:
                raise ControllerUnavailableError(job_event.message or "")
            raise HpcAiError(f"waiting on job {self.job_id} failed: {job_event.message}")
        return self._raise_if_failed(job_event.state or "UNKNOWN", job_event.exit_code)

    def _raise_if_failed(self, state: str, exit_code: int | None) -> dict[str, Any]:
        hook = self._hook()
        try:
            accounting = hook.get_accounting(str(self.job_id))
        except Exception:
            accounting = {}
        result = build_result(str(self.job_id), accounting=accounting, state=state, exit_code=exit_code,
                              requested={"memory": accounting.get("requested_memory_bytes")})
        failure = failure_for(result)
        if failure is not None:
            raise failure
        return result
