"""The one deferrable wait on a job, for every backend.

Many triggers in one triggerer share one :class:`~airflow_provider_hpcai.jobs.poller.StatusPoller`
per backend connection: N waiting tasks cost one batched status query per interval, not N (Slurm:
one ``squeue``/REST call for all jobs; Kubernetes: one listing by label selector per namespace).
The trigger streams the job's output into the task log when asked, and fires one
:class:`~airflow_provider_hpcai.jobs.event.JobEvent` whose resume state tells the operator (or
the next trigger, after a triggerer restart) what was shown already. ``serialize()`` mirrors
``__init__`` with primitives only; the backend is rebuilt from its name and connection id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hpcai.exceptions import ControllerUnavailableError
from airflow_provider_hpcai.jobs.event import CONTROLLER_UNAVAILABLE, TRIGGER_ERROR, JobEvent
from airflow_provider_hpcai.jobs.output import ResumeState
from airflow_provider_hpcai.jobs.ref import JobRef

__all__ = ["JobTrigger"]


class JobTrigger(BaseTrigger):
    """Wait for a job on any registered backend to finish.

    :param ref: the job's :class:`~airflow_provider_hpcai.jobs.ref.JobRef` as a dict (its
        ``backend`` names the backend).
    :param conn_id: the backend's connection (``None``: its default).
    :param poll_interval: seconds between (shared, batched) status queries.
    :param max_poll_interval: the longest backoff while nothing changes.
    :param outage_budget: seconds of scheduler outage tolerated before the wait fails with an error event.
    :param stream_logs: copy the job's output into the task log while it runs.
    :param resume: what of the output was shown already (a re-created trigger goes on from there).
    :param echo: JSON-safe data handed back unchanged in the event (the operator's job reference).
    """

    def __init__(
        self,
        ref: dict[str, Any],
        conn_id: str | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        outage_budget: float = 600.0,
        stream_logs: bool = False,
        resume: dict[str, Any] | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.ref = JobRef.from_dict(dict(ref))
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.outage_budget = float(outage_budget)
        self.stream_logs = bool(stream_logs)
        self.resume = ResumeState.from_dict(resume)
        self.echo = echo or {}

    @property
    def job_id(self) -> str:
        """The job this trigger waits for."""
        return self.ref.job_id

    @classmethod
    def for_job(cls, backend: Any, ref: JobRef, *, poll_interval: float,
                echo: dict[str, Any] | None = None) -> JobTrigger:
        """The trigger that waits for ``ref`` on ``backend`` (which must :attr:`~JobBackend.can_defer`)."""
        from airflow_provider_hpcai import config

        if not backend.can_defer:
            raise NotImplementedError(f"the {backend.name} backend cannot defer: its jobs depend on the worker")
        interval, longest = backend.poll_bounds(poll_interval)
        return cls(ref=ref.to_dict(), conn_id=backend.conn_id, poll_interval=interval, max_poll_interval=longest,
                   outage_budget=config.get_float("outage_budget"),
                   stream_logs=backend.stream_while_waiting(deferred=True),
                   resume=ResumeState.from_dict(ref.extra.get("resume")).to_dict(), echo=echo)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{JobTrigger.__module__}.{JobTrigger.__qualname__}",
            {
                "ref": self.ref.to_dict(),
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "outage_budget": self.outage_budget,
                "stream_logs": self.stream_logs,
                "resume": self.resume.to_dict(),
                "echo": self.echo,
            },
        )

    def _backend(self) -> Any:
        from airflow_provider_hpcai.backends import get_backend

        run_as = self.ref.extra.get("run_as")  # a job that runs as its owner is watched as that user
        return get_backend(self.ref.backend, self.conn_id, **({"run_as": run_as} if run_as else {}))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_hpcai.jobs.watch import DeferredAccess, watch

        try:
            backend = self._backend()
            status = await watch(DeferredAccess(backend), self.ref, interval=self.poll_interval,
                                 max_interval=self.max_poll_interval, outage_budget=self.outage_budget,
                                 resume=self.resume, log=self.log, stream=self.stream_logs)
            event = JobEvent.ended(status, resume=self.resume, echo=self.echo)
        except ControllerUnavailableError as err:
            event = JobEvent.error(self.ref.job_id, str(err), CONTROLLER_UNAVAILABLE, resume=self.resume,
                                   echo=self.echo)
        except Exception as err:  # never let an exception escape run()
            self.log.exception("Waiting on job %s failed", self.ref.job_id)
            event = JobEvent.error(self.ref.job_id, f"{type(err).__name__}: {err}", TRIGGER_ERROR,
                                   resume=self.resume, echo=self.echo)
        yield TriggerEvent(event.to_payload())

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear): cancel the job.

        Airflow 3.3's triggerer calls this for every trigger that stops being its own, also when
        the trigger only moved to another triggerer (its heartbeat was late, or two triggerers
        raced for it) while the task still waits. The task's state tells the two apart: a task
        that is still ``deferred`` was not acted on, and its job must live on.
        """
        backend = self._backend()
        state = await self._task_state()
        if state == "deferred":
            self.log.info("Not cancelling %s: its task is still deferred (the wait moved to another triggerer)",
                          backend.describe(self.ref))
            return
        await backend.acancel(self.ref)
        self.log.info("Cancelled %s because the task was killed (task state %s)", backend.describe(self.ref),
                      state or "unknown")

    async def _task_state(self) -> str | None:
        """The state of the task instance this trigger serves, asked through the triggerer (``None``: unknown)."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return None
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import GetTaskStates

            map_index = getattr(ti, "map_index", -1)
            map_index = -1 if map_index is None else int(map_index)
            answer = await task_runner.SUPERVISOR_COMMS.asend(GetTaskStates(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id],
                map_index=map_index if map_index >= 0 else None))
            states = (getattr(answer, "task_states", None) or {}).get(ti.run_id) or {}
            key = f"{ti.task_id}_{map_index}" if map_index >= 0 else ti.task_id
            found = states.get(key)
            return None if found is None else str(getattr(found, "value", found))
        except Exception as err:  # no triggerer comms (tests, older Airflow): cancel as asked
            self.log.warning("Could not read the state of task %s (%s); cancelling its job as asked",
                             getattr(ti, "task_id", "?"), err)
            return None
