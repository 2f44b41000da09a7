"""The deferrable wait on a Slurm job.

Many triggers in one triggerer share one :class:`~airflow_provider_hpcai.triggers.poller.StatusPoller`
per connection: N waiting tasks cost one controller query per interval, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hpcai.exceptions import ControllerUnavailableError
from airflow_provider_hpcai.slurm.states import JobStatus, Phase
from airflow_provider_hpcai.triggers.poller import get_poller

__all__ = ["SlurmJobTrigger"]

_LOG_CHUNK = 256 * 1024


class SlurmJobTrigger(BaseTrigger):
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
        super().__init__()
        self.job_id = str(job_id)
        self.slurm_conn_id = slurm_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.outage_budget = float(outage_budget)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.offsets = {"stdout": int(stdout_offset), "stderr": int(stderr_offset)}
        self.echo = echo or {}
        self.tag = tag

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "slurm_conn_id": self.slurm_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "outage_budget": self.outage_budget,
                "stdout_path": self.stdout_path,
                "stderr_path": self.stderr_path,
                "stdout_offset": self.offsets["stdout"],
                "stderr_offset": self.offsets["stderr"],
                "echo": self.echo,
                "tag": self.tag,
            },
        )

    def _hook(self):  # type: ignore[no-untyped-def]
        from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook

        return AsyncSlurmHook.shared(self.slurm_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        poller = get_poller(
            self.slurm_conn_id,
            lambda: hook.get_statuses,
            interval=self.poll_interval,
            max_interval=self.max_poll_interval,
            outage_budget=self.outage_budget,
        )
        streamer = None
        if self.stdout_path or self.stderr_path:
            streamer = asyncio.get_running_loop().create_task(self._stream_logs(hook))
        try:
            status = await poller.wait(self.job_id, on_change=self._log_change, interval=self.poll_interval,
                                       tag=self.tag, outage_budget=self.outage_budget,
                                       on_outage=self.log.warning)
            if streamer is not None:
                streamer.cancel()
                await self._drain(hook)
            yield TriggerEvent(self._event(status))
        except ControllerUnavailableError as err:
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": str(err),
                                "error_type": "controller_unavailable", **self._offsets()})
        except Exception as err:  # never let an exception escape run()
            self.log.exception("Waiting on Slurm job %s failed", self.job_id)
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": f"{type(err).__name__}: {err}",
                                "error_type": "trigger_error", **self._offsets()})
        finally:
            if streamer is not None and not streamer.done():
                streamer.cancel()

    def _offsets(self) -> dict[str, Any]:
        return {"stdout_offset": self.offsets["stdout"], "stderr_offset": self.offsets["stderr"], "echo": self.echo}

    def _event(self, status: JobStatus) -> dict[str, Any]:
        outcome = {Phase.SUCCEEDED: "success", Phase.FAILED: "failed"}.get(status.phase, "unknown")
        return {
            "status": outcome,
            "job_id": self.job_id,
            "state": status.state,
            "exit_code": status.exit_code,
            "reason": status.reason,
            **self._offsets(),
        }

    def _log_change(self, status: JobStatus) -> None:
        reason = f" ({status.reason})" if status.reason else ""
        self.log.info("Slurm job %s is %s%s", self.job_id, status.state, reason)

    async def _stream_logs(self, hook) -> None:  # type: ignore[no-untyped-def]
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._drain(hook)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # output is a convenience: never fail the wait for it
                self.log.debug("Could not read output of job %s: %s", self.job_id, err)

    async def _drain(self, hook) -> None:  # type: ignore[no-untyped-def]
        for stream, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            if not path:
                continue
            while True:
                chunk = await hook.read_output(path, self.offsets[stream], _LOG_CHUNK)
                if not chunk:
                    break
                self.offsets[stream] += len(chunk)
                for line in chunk.decode("utf-8", "replace").splitlines():
                    self.log.info("[%s %s] %s", self.job_id, stream, line)
                if len(chunk) < _LOG_CHUNK:
                    break

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear): cancel the Slurm job."""
        await self._hook().cancel(self.job_id)
        self.log.info("Cancelled Slurm job %s because the task was killed", self.job_id)
