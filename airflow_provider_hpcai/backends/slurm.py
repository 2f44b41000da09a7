"""The Slurm backend: :class:`JobSpec` -> sbatch (REST, SSH or local CLI) via :class:`SlurmHook`."""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook
from airflow_provider_hpcai.jobs.states import JobStatus, Phase, phase_of
from airflow_provider_hpcai.slurm.script import output_paths
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["SlurmBackend"]

#: How long to wait for an answering slurmdbd to record a finished job (it lags the controller);
#: while slurmdbd does not answer, ``[hpcai] accounting_wait`` bounds the wait instead.
ACCOUNTING_WAIT_SECONDS = 20.0


class SlurmBackend(JobBackend):
    """Runs jobs on a Slurm cluster.

    :param conn_id: the ``slurm`` connection (default ``slurm_default``).
    :param hook: use this hook (tests).
    :param async_hook: use this hook in the triggerer (default: the process's shared one for the
        connection, or one over ``hook``).
    :param run_as: the allowlisted Slurm user jobs run as (``None``: the connection's account); it
        travels in the job reference, so the triggerer, reattach and cancel act as the same user.
    """

    name = "slurm"
    can_defer = True
    #: Jobs can run as another (allowlisted) user: :mod:`airflow_provider_hpcai.identity`.
    runs_as_user = True
    #: ``JobSpec.components`` become ``#SBATCH hetjob`` groups (REST: a ``jobs`` list).
    runs_hetjobs = True
    ignores = ("image",)

    def __init__(self, conn_id: str | None = None, *, hook: SlurmHook | None = None,
                 async_hook: AsyncSlurmHook | None = None, run_as: str | None = None, **options: Any) -> None:
        super().__init__(conn_id or SlurmHook.default_conn_name, **options)
        self._given_hook = hook
        self.run_as = run_as or None
        self.hook = hook or SlurmHook(self.conn_id, run_as=self.run_as)
        self._async_hook = async_hook

    @functools.cached_property
    def async_hook(self) -> AsyncSlurmHook:
        """The triggerer's hook: shared per connection in a process (two transports for all waits)."""
        if self._async_hook is not None:
            return self._async_hook
        if self._given_hook is not None:
            return AsyncSlurmHook(self.conn_id, hook=self._given_hook)
        return AsyncSlurmHook.shared(self.conn_id, self.run_as)

    def _ref(self, job_id: str, workdir: str, spec_array: bool, tag: str | None) -> JobRef:
        out, err = output_paths(workdir, array=spec_array)
        if not spec_array:
            out, err = out.replace("%j", job_id), err.replace("%j", job_id)
        extra: dict[str, Any] = {"workdir": workdir, "conn_id": self.conn_id}
        if self.run_as:
            extra["run_as"] = self.run_as
        return JobRef(self.name, job_id, tag, out, err, extra)

    # ------------------------------------------------------------------ contract
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        if spec.container is not None:  # a runtime the cluster does not offer fails here, before sbatch
            from airflow_provider_hpcai.containers.runtime import connection_runtime

            spec = spec.replace(container=connection_runtime(spec.container, "slurm", self.hook.extras))
        where = self.hook.workdir(workdir)
        submitted_at = time.time()
        job_id = self.hook.submit(spec, workdir=where)
        ref = self._ref(job_id, where, spec.array is not None, spec.tag)
        ref.extra["submitted_at"] = submitted_at
        if spec.components:  # the accounting record is whole once it holds every group
            ref.extra["het_groups"] = 1 + len(spec.components)
        return ref

    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        found = self.hook.find_live_job(tag)
        if found is None:
            return None
        return self._ref(found.job_id, self.hook.workdir(workdir), False, tag)

    def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        found = self.hook.get_statuses([r.job_id for r in refs]) if refs else {}
        return {r.job_id: found.get(r.job_id) for r in refs}

    def status(self, ref: JobRef) -> JobStatus | None:
        """One job's status, retried through a controller outage (a try's reattach lookup; the
        poller's batched queries ride outages out on their own)."""
        return self.hook.get_status(ref.job_id)

    async def astatuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        found = await self.async_hook.get_statuses([r.job_id for r in refs]) if refs else {}
        return {r.job_id: found.get(r.job_id) for r in refs}

    def _path(self, ref: JobRef, stream: str) -> str | None:
        path = ref.stdout_path if stream == "stdout" else ref.stderr_path if stream == "stderr" else None
        return None if not path or "%" in path else path  # an array's per-task files have no one path

    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        path = self._path(ref, stream)
        return self.hook.read_output(path, offset, limit) if path else b""

    async def aread_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        path = self._path(ref, stream)
        return await self.async_hook.read_output(path, offset, limit) if path else b""

    async def acancel(self, ref: JobRef) -> None:
        await self.async_hook.cancel(ref.job_id)

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return self.hook.read_output(path, offset, limit)

    def launcher_hint(self) -> str | None:
        """The connection's ``launcher`` extra (e.g. ``srun``), when it names one."""
        from airflow_provider_hpcai.exceptions import HpcAiError

        try:
            name = self.hook.extras.get("launcher")
        except HpcAiError:  # no such connection: submission reports it with a clear message
            return None
        return name if isinstance(name, str) and name else None

    def describe(self, ref: JobRef) -> str:
        return f"Slurm job {ref.job_id}"

    def result_extra(self, ref: JobRef) -> dict[str, Any]:
        return {**super().result_extra(ref), "transport": self.hook.transport_name}

    def accounting(self, ref: JobRef, status: JobStatus) -> dict[str, Any]:
        """The job's accounting record, once slurmdbd has its final state.

        While slurmdbd is down or behind, the task waits for the record (``[hpcai]
        accounting_wait``, saying why in its log) instead of classifying the job without it.
        A record carrying another tag is an older job that had the same id (ids restart after a
        controller state loss) while ours has not reached slurmdbd yet: it is never returned.
        """
        from airflow_provider_hpcai import config
        from airflow_provider_hpcai.jobs.watch import wait_for_accounting

        job_id, tag, submitted_at = ref.job_id, ref.tag, ref.extra.get("submitted_at")
        same_clock = self.hook.transport_name != "ssh"  # sacct prints the cluster's local time

        def fetch() -> dict[str, Any]:  # one query: the wait below is the retry loop
            record = self.hook.get_conn().accounting([job_id]).get(job_id, {})
            if record and (tag and record.get("tag") not in (None, tag)
                           or _older(record, submitted_at, parse_text=same_clock)):
                return {}
            return record

        return wait_for_accounting(fetch, final=lambda r: _final(r, ref.extra.get("het_groups")),
                                   what=self.describe(ref), wait=config.get_float("accounting_wait"),
                                   log=self.hook.log, lag=ACCOUNTING_WAIT_SECONDS)

    def cancel(self, ref: JobRef) -> None:
        self.hook.cancel(ref.job_id)


def _final(record: dict[str, Any], het_groups: int | None) -> bool:
    """Whether an accounting record holds the job's final state (and, for a hetjob, every group).

    slurmdbd can answer for a hetjob that just ended before it holds each group's record; such a
    record lacks the groups' own figures (``het_components``). A hetjob cancelled before it
    started may never get them (24.11 keeps its groups as separate plain records): it is final
    as it is.
    """
    if phase_of(record.get("state")) is Phase.ACTIVE:
        return False
    if not het_groups or str(record.get("state") or "").startswith("CANCELLED"):
        return True
    return len(record.get("het_components") or []) >= het_groups


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

