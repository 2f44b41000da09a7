"""The Slurm backend: :class:`JobSpec` -> sbatch (REST, SSH or local CLI) via :class:`SlurmHook`."""

from __future__ import annotations

import datetime
import time
from typing import Any

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.slurm.outcome import build_result
from airflow_provider_hpcai.slurm.script import output_paths
from airflow_provider_hpcai.slurm.states import JobStatus, Phase
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["SlurmBackend"]

#: How long to wait for accounting to record a finished job (slurmdbd lags the controller).
ACCOUNTING_WAIT_SECONDS = 20.0


class SlurmBackend(JobBackend):
    """Runs jobs on a Slurm cluster.

    :param conn_id: the ``slurm`` connection (default ``slurm_default``).
    :param hook: use this hook (tests).
    """

    name = "slurm"
    can_defer = True

    def __init__(self, conn_id: str | None = None, *, hook: SlurmHook | None = None, **options: Any) -> None:
        super().__init__(conn_id or SlurmHook.default_conn_name, **options)
        self.hook = hook or SlurmHook(self.conn_id)

    def _ref(self, job_id: str, workdir: str, spec_array: bool, tag: str | None) -> JobRef:
        out, err = output_paths(workdir, array=spec_array)
        if not spec_array:
            out, err = out.replace("%j", job_id), err.replace("%j", job_id)
        return JobRef(self.name, job_id, tag, out, err, {"workdir": workdir, "conn_id": self.conn_id})

    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        where = self.hook.workdir(workdir)
        submitted_at = time.time()
        job_id = self.hook.submit(spec, workdir=where)
        ref = self._ref(job_id, where, spec.array is not None, spec.tag)
        ref.extra["submitted_at"] = submitted_at
        return ref

    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        found = self.hook.find_live_job(tag)
        if found is None:
            return None
        return self._ref(found.job_id, self.hook.workdir(workdir), False, tag)

    def status(self, ref: JobRef) -> JobStatus | None:
        return self.hook.get_status(ref.job_id)

    def trigger(self, ref: JobRef, *, poll_interval: float, echo: dict[str, Any] | None = None) -> Any:
        from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger

        stream = config.get_bool("stream_logs")
        return SlurmJobTrigger(
            job_id=ref.job_id,
            slurm_conn_id=self.conn_id,
            poll_interval=poll_interval,
            max_poll_interval=max(poll_interval, config.get_float("max_poll_interval")),
            outage_budget=config.get_float("outage_budget"),
            stdout_path=ref.stdout_path if stream else None,
            stderr_path=ref.stderr_path if stream else None,
            echo=echo,
            tag=ref.tag,
        )

    def wait(self, ref: JobRef, *, poll_interval: float, log: Any) -> JobStatus:
        """Poll one job with backoff (non-deferrable mode; the deferrable path batches across tasks)."""
        interval, last_state, offsets = poll_interval, None, {"stdout": 0, "stderr": 0}
        ref.extra["offsets"] = offsets
        while True:
            status = self.status(ref) or JobStatus(ref.job_id, "UNKNOWN")
            if ref.tag and status.tag and status.tag != ref.tag:
                status = JobStatus(ref.job_id, "UNKNOWN", reason="the controller lost the job and reused its id")
            if status.state != last_state:
                log.info("Slurm job %s is %s%s", ref.job_id, status.state, f" ({status.reason})" if status.reason else "")
                last_state, interval = status.state, poll_interval
            self._copy_output(ref, offsets, log)
            if status.phase is not Phase.ACTIVE:
                return status
            time.sleep(interval)
            interval = min(interval * 1.5, max(poll_interval, config.get_float("max_poll_interval")))

    def _copy_output(self, ref: JobRef, offsets: dict[str, int], log: Any) -> None:
        for stream, path in (("stdout", ref.stdout_path), ("stderr", ref.stderr_path)):
            if not path or "%" in path:
                continue
            while True:
                chunk = self.hook.read_output(path, offsets.get(stream, 0), 256 * 1024)
                if not chunk:
                    break
                offsets[stream] = offsets.get(stream, 0) + len(chunk)
                for line in chunk.decode("utf-8", "replace").splitlines():
                    log.info("[%s %s] %s", ref.job_id, stream, line)

    def _accounting(self, job_id: str, tag: str | None = None, submitted_at: float | None = None) -> dict[str, Any]:
        """The job's accounting record, once slurmdbd has its final state.

        A record carrying another tag is an older job that had the same id (ids restart after a
        controller state loss) while ours has not reached slurmdbd yet: it is never returned.
        """
        deadline = time.monotonic() + ACCOUNTING_WAIT_SECONDS
        while True:
            try:
                record = self.hook.get_accounting(job_id)
            except Exception:  # accounting is optional (clusters without slurmdbd)
                return {}
            same_clock = self.hook.transport_name != "ssh"  # sacct prints the cluster's local time
            if record and (tag and record.get("tag") not in (None, tag)
                           or _older(record, submitted_at, parse_text=same_clock)):
                record = {}
            finished = bool(record) and _phase(record.get("state")) is not Phase.ACTIVE
            if finished or time.monotonic() > deadline:
                return record
            time.sleep(2)

    def result(self, ref: JobRef, *, state: str, exit_code: int | None, requested: dict[str, Any],
               offsets: dict[str, int] | None, log: Any) -> dict[str, Any]:
        offsets = dict(offsets or ref.extra.get("offsets") or {"stdout": 0, "stderr": 0})
        self._copy_output(ref, offsets, log)
        accounting = self._accounting(ref.job_id, ref.tag, ref.extra.get("submitted_at"))
        tail = self.stderr_tail(ref) + "\n" + self._tail(ref.stdout_path)
        return build_result(
            ref.job_id,
            accounting=accounting,
            state=state,
            exit_code=exit_code,
            requested=requested,
            output_tail=tail,
            extra={
                "backend": self.name,
                "transport": self.hook.transport_name,
                "tag": ref.tag,
                "stdout_path": ref.stdout_path,
                "stderr_path": ref.stderr_path,
            },
        )

    def _tail(self, path: str | None, max_bytes: int = 4096) -> str:
        if not path or "%" in path:
            return ""
        try:
            data = self.hook.read_output(path, 0, 16 * 1024 * 1024)
        except Exception:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def stderr_tail(self, ref: JobRef, max_bytes: int = 4096) -> str:
        return self._tail(ref.stderr_path, max_bytes)

    def cancel(self, ref: JobRef) -> None:
        self.hook.cancel(ref.job_id)


def _older(record: dict[str, Any], submitted_at: float | None, slack: float = 300.0, parse_text: bool = True) -> bool:
    """Whether ``record`` was submitted well before our job: an earlier job with a reused id.

    REST gives epoch seconds; sacct's text is the cluster's local time, compared only when the
    cluster shares this host's clock (``parse_text``).
    """
    if submitted_at is None:
        return False
    submit = record.get("submit")
    if not isinstance(submit, (int, float)) and not parse_text:
        return False
    try:
        when = float(submit) if isinstance(submit, (int, float)) else \
            datetime.datetime.fromisoformat(str(submit)).timestamp()
    except (TypeError, ValueError):
        return False
    return when < submitted_at - slack


def _phase(state: str | None) -> Phase:
    from airflow_provider_hpcai.slurm.states import phase_of

    return phase_of(state)
