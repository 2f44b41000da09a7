"""The deferrable wait on a Slurm job under its earlier name.

:class:`SlurmJobTrigger` is the one :class:`~airflow_provider_hpcai.triggers.job.JobTrigger` built
from the arguments of earlier versions (a trigger stored before an upgrade, or a DAG that
defers on it by hand); it serializes as a ``JobTrigger``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.jobs.output import ResumeState
from airflow_provider_hpcai.triggers.job import JobTrigger

__all__ = ["SlurmJobTrigger"]


class SlurmJobTrigger(JobTrigger):
    """Wait for a Slurm job to finish; optionally copy its output into the task log as it grows.

    :param job_id: the Slurm job id.
    :param slurm_conn_id: the Slurm connection.
    :param poll_interval: seconds between (shared, batched) status queries.
    :param max_poll_interval: the longest backoff while nothing changes.
    :param outage_budget: seconds of controller outage tolerated before failing the wait.
    :param stdout_path: the job's output file on the cluster, to stream (``None``: no streaming).
    :param stderr_path: the job's error file.
    :param stdout_offset: bytes of stdout already shown (on a re-created trigger).
    :param stderr_offset: bytes of stderr already shown.
    :param echo: JSON-safe data handed back unchanged in the event (the operator's job reference).
    :param tag: the provider tag the job carries; a job under the same id with another tag is
        not ours (the controller lost our job and reused its id).
    """

    def __init__(
        self,
        job_id: str,
        slurm_conn_id: str = "slurm_default",
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        outage_budget: float = 600.0,
        stdout_path: str | None = None,
        stderr_path: str | None = None,
        stdout_offset: int = 0,
        stderr_offset: int = 0,
        echo: dict[str, Any] | None = None,
        tag: str | None = None,
    ) -> None:
        ref = {"backend": "slurm", "job_id": str(job_id), "tag": tag, "stdout_path": stdout_path,
               "stderr_path": stderr_path, "extra": {"conn_id": slurm_conn_id}}
        resume = ResumeState.from_legacy({"stdout": int(stdout_offset), "stderr": int(stderr_offset)})
        super().__init__(ref=ref, conn_id=slurm_conn_id, poll_interval=poll_interval,
                         max_poll_interval=max_poll_interval, outage_budget=outage_budget,
                         stream_logs=bool(stdout_path or stderr_path), resume=resume.to_dict(), echo=echo)

    def _hook(self) -> Any:
        """The process's shared async hook of the connection."""
        from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook

        return AsyncSlurmHook.shared(self.conn_id or "slurm_default")

    def _backend(self) -> Any:
        from airflow_provider_hpcai.backends.slurm import SlurmBackend

        async_hook = self._hook()
        return SlurmBackend(self.conn_id, hook=async_hook.hook, async_hook=async_hook)
