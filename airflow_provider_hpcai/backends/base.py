"""The contract every execution backend (Slurm, Kubernetes, Grid Engine, local) fulfils.

Operators, the blocking wait and the one deferrable trigger drive a backend through these
methods only. A backend supplies what differs: submit, find a live job by tag, batched status
queries translated into the shared states (:mod:`airflow_provider_hpcai.jobs.states`), raw
output bytes from an offset, accounting, cancel. What is common is here, written once: the wait
(:meth:`JobBackend.wait`, on the shared batched poller; the deferrable
:class:`~airflow_provider_hpcai.triggers.job.JobTrigger` runs the same loop in the triggerer),
the output rule (:func:`~airflow_provider_hpcai.jobs.output.take_lines`) and the classified
outcome (:meth:`JobBackend.outcome`).

Adding a backend: one module implementing :class:`JobBackend`, one entry in
:data:`airflow_provider_hpcai.backends.BACKENDS`, and one fixture line in
``tests/contract/conftest.py``; the contract suite then runs on it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow_provider_hpcai import config
from airflow_provider_hpcai.jobs.outcome import JobOutcome, build_result
from airflow_provider_hpcai.jobs.output import ResumeState, read_file_part
from airflow_provider_hpcai.jobs.ref import JobRef
from airflow_provider_hpcai.jobs.states import JobStatus
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["JobBackend", "JobRef", "SharedFileOutput"]

_TAIL_BYTES = 4096
#: A stream under this many bytes is read whole for its tail; a longer one has its end found first.
_HEAD_BYTES = 16 * 1024 * 1024
_LOG = logging.getLogger(__name__)


class JobBackend(abc.ABC):
    """Runs :class:`JobSpec` jobs somewhere.

    :param conn_id: the Airflow connection the backend uses (``None``: its default).
    """

    name: ClassVar[str]
    #: Whether the wait can move to the triggerer (the job does not depend on the worker).
    can_defer: ClassVar[bool] = False
    #: The interpreter a job runs Python with (``None``: the worker's own, ``sys.executable``:
    #: the job runs where the worker's environment is).
    default_python: ClassVar[str | None] = None
    #: The output streams :meth:`read_output` serves (a backend may name them per job).
    streams: ClassVar[tuple[str, ...]] = ("stdout", "stderr")
    #: Whether :meth:`read_file` can read files the job wrote (a shared or remote file system).
    reads_files: ClassVar[bool] = True
    #: Whether a GPU must be requested for a job to get one (``False``: the machine's GPUs are simply there).
    schedules_gpus: ClassVar[bool] = True
    #: Whether jobs run in the worker's own Python environment (its installed extras count).
    shares_worker_environment: ClassVar[bool] = False
    #: Options a job may carry that this backend has no meaning for (warned about, not refused).
    ignores: ClassVar[tuple[str, ...]] = ()
    #: Whether the backend runs heterogeneous jobs (``JobSpec.components``); the others refuse them
    #: in :meth:`check_components` before submitting anything.
    runs_hetjobs: ClassVar[bool] = False

    def __init__(self, conn_id: str | None = None, **options: Any) -> None:
        self.conn_id = conn_id
        self.options = options

    # ------------------------------------------------------------------ what each backend supplies
    @abc.abstractmethod
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        """Start the job; return where to find it."""

    @abc.abstractmethod
    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        """A still-active job carrying ``tag`` (for reattaching after a crash), or ``None``."""

    @abc.abstractmethod
    def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        """The jobs' current statuses, by job id, in as few scheduler queries as the backend can
        (``None``: the backend no longer knows the job)."""

    @abc.abstractmethod
    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        """Up to ``limit`` raw bytes of the job's output ``stream`` from ``offset`` (``b""``: nothing new).

        :raises OutputRestarted: the stream got shorter than ``offset`` (a rotated log).
        """

    @abc.abstractmethod
    def accounting(self, ref: JobRef, status: JobStatus) -> dict[str, Any]:
        """The finished job's accounting record (``{}`` when the backend keeps none)."""

    @abc.abstractmethod
    def cancel(self, ref: JobRef) -> None:
        """Stop the job; no error if it already ended."""

    # ------------------------------------------------------------------ optional, with defaults
    def check_components(self, spec: JobSpec) -> None:
        """Refuse a heterogeneous job (``spec.components``) unless this backend runs them.

        :raises InvalidJobSpecError: saying that heterogeneous jobs need Slurm, and what to do instead.
        """
        if spec.components and not self.runs_hetjobs:
            from airflow_provider_hpcai.exceptions import InvalidJobSpecError

            raise InvalidJobSpecError(
                f"job {spec.name}: heterogeneous jobs need Slurm (components= asks for {len(spec.components) + 1} het "
                f"groups); the {self.name} backend runs one set of resources per job: use backend 'slurm', or "
                "split the work into tasks of their own")

    async def astatuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        """:meth:`statuses` for the triggerer (default: in a worker thread)."""
        return await asyncio.to_thread(self.statuses, list(refs))

    async def aread_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        """:meth:`read_output` for the triggerer (default: in a worker thread)."""
        return await asyncio.to_thread(self.read_output, ref, stream, offset, limit)

    async def acancel(self, ref: JobRef) -> None:
        """:meth:`cancel` for the triggerer (default: in a worker thread)."""
        await asyncio.to_thread(self.cancel, ref)

    def output_streams(self, ref: JobRef) -> Sequence[str]:
        """The streams of this job to copy into the task log, in order."""
        return self.streams

    async def aoutput_streams(self, ref: JobRef) -> Sequence[str]:
        return self.output_streams(ref)

    def output_label(self, ref: JobRef, stream: str) -> str:
        """How the task log prefixes the job's output lines (``[<label>] line``)."""
        return f"{ref.job_id} {stream}"

    def vanished(self, ref: JobRef) -> JobStatus | None:
        """What a waiter concludes when the job disappears (``None``: count it as missing, and
        give up as ``UNKNOWN`` after a few polls)."""
        return None

    def describe(self, ref: JobRef) -> str:
        """The job in words, for the task log (``Slurm job 42``)."""
        return f"{self.name.capitalize()} job {ref.job_id}"

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Bytes of a file the job wrote (its summary...), for backends where :attr:`reads_files`."""
        raise NotImplementedError(f"the {self.name} backend cannot read the job's files")

    def job_output(self, ref: JobRef, max_bytes: int = 16 * 1024 * 1024) -> str | None:
        """The job's whole standard output (``None``: unknown)."""
        try:
            data = self.read_output(ref, self.output_streams(ref)[0], 0, max_bytes)
        except Exception:
            return None
        return data[-max_bytes:].decode("utf-8", "replace")

    def launcher_hint(self) -> str | None:
        """The launcher this backend's connection asks for (e.g. ``srun``), or ``None``."""
        return None

    def python(self) -> str:
        """The interpreter a job runs Python with on this backend."""
        return self.default_python or sys.executable

    def poll_bounds(self, poll_interval: float) -> tuple[float, float]:
        """``(interval, longest backoff)`` of the wait on this backend."""
        return poll_interval, max(poll_interval, config.get_float("max_poll_interval"))

    def stream_while_waiting(self, *, deferred: bool) -> bool:
        """Whether the wait copies output into the task log as it grows (else at the end)."""
        return config.get_bool("stream_logs") if deferred else True

    def result_extra(self, ref: JobRef) -> dict[str, Any]:
        """Backend details merged into the result (paths, transport...)."""
        return {"backend": self.name, "tag": ref.tag, "stdout_path": ref.stdout_path, "stderr_path": ref.stderr_path}

    def finalize(self, ref: JobRef, status: JobStatus, accounting: dict[str, Any], log: Any) -> None:
        """Last words on a finished job (delete a stuck workload...); default: nothing."""

    # ------------------------------------------------------------------ written once, for all
    def status(self, ref: JobRef) -> JobStatus | None:
        """The job's current status (``None`` if the backend no longer knows it)."""
        return self.statuses([ref]).get(ref.job_id)

    def wait(self, ref: JobRef, *, poll_interval: float, log: Any, resume: ResumeState | None = None) -> JobStatus:
        """Block until the job ends (non-deferrable mode), copying its output to ``log``.

        The same loop as the deferrable trigger (the shared poller), run in this thread.
        """
        from airflow_provider_hpcai.jobs.watch import BlockingAccess, run_sync, watch

        state = resume or ResumeState.from_dict(ref.extra.get("resume"))
        interval, longest = self.poll_bounds(poll_interval)
        try:
            return run_sync(watch(BlockingAccess(self), ref, interval=interval, max_interval=longest,
                                     outage_budget=config.get_float("outage_budget"), resume=state, log=log,
                                     stream=self.stream_while_waiting(deferred=False)))
        finally:
            ref.extra["resume"] = state.to_dict()

    def outcome(self, ref: JobRef, *, state: str, exit_code: int | None, requested: dict[str, Any],
                resume: ResumeState | None, log: Any) -> JobOutcome:
        """The finished job's result and classified failure, after copying the rest of its output to ``log``."""
        from airflow_provider_hpcai.jobs.watch import BlockingAccess, copy_output, run_sync

        shown = resume if resume is not None else ResumeState.from_dict(ref.extra.get("resume"))
        run_sync(copy_output(BlockingAccess(self), ref, shown, log, final=True))
        status = JobStatus(ref.job_id, state, exit_code=exit_code, tag=ref.tag)
        record = self.accounting(ref, status)
        tail = self.error_tail(ref)
        result = build_result(ref.job_id, accounting=record, state=state, exit_code=exit_code, requested=requested,
                              output_tail=tail + "\n" + self._tail(ref, self.output_streams(ref)[:1]),
                              extra=self.result_extra(ref))
        self.finalize(ref, status, record, log)
        return JobOutcome.of(result, tail)

    def result(self, ref: JobRef, *, state: str, exit_code: int | None, requested: dict[str, Any],
               offsets: dict[str, int] | None = None, log: Any, resume: ResumeState | None = None) -> dict[str, Any]:
        """:meth:`outcome`'s result alone (``offsets``: the ``{"stdout": n, "stderr": m}`` of earlier versions)."""
        if resume is None and offsets:
            resume = ResumeState.from_legacy(offsets)
        return self.outcome(ref, state=state, exit_code=exit_code, requested=requested, resume=resume,
                            log=log).result

    def error_tail(self, ref: JobRef, max_bytes: int = _TAIL_BYTES) -> str:
        """The end of the job's error output (for exception messages and classification)."""
        streams = list(self.output_streams(ref))
        return self._tail(ref, streams[1:] or streams[:1], max_bytes)

    def stderr_tail(self, ref: JobRef, max_bytes: int = _TAIL_BYTES) -> str:
        """Earlier name of :meth:`error_tail`."""
        return self.error_tail(ref, max_bytes)

    def _tail(self, ref: JobRef, streams: Sequence[str], max_bytes: int = _TAIL_BYTES) -> str:
        text = ""
        for stream in streams:
            try:
                data = self._stream_end(ref, stream, max_bytes)
            except Exception as err:  # the tail only adds detail to a message: never fail for it
                _LOG.debug("Could not read the end of %s of job %s: %s", stream, ref.job_id, err)
                continue
            text += data.decode("utf-8", "replace")
        return text

    def _stream_end(self, ref: JobRef, stream: str, max_bytes: int) -> bytes:
        """The last ``max_bytes`` of a stream: one read when it is under :data:`_HEAD_BYTES`; past that,
        its end is found by one-byte probes (doubling, then halving: about 2 log2(size) reads)."""
        data = self.read_output(ref, stream, 0, _HEAD_BYTES)
        if len(data) < _HEAD_BYTES:
            return data[-max_bytes:]

        def exists(offset: int) -> bool:
            return bool(self.read_output(ref, stream, offset, 1))

        low, high = _HEAD_BYTES, 2 * _HEAD_BYTES  # a byte at low - 1 exists; is there one at high - 1?
        while high < 1 << 50 and exists(high - 1):
            low, high = high, 2 * high
        while low < high:  # the size is in [low, high]
            middle = (low + high) // 2
            if exists(middle):
                low = middle + 1
            else:
                high = middle
        return self.read_output(ref, stream, max(0, low - max_bytes), max_bytes)


class SharedFileOutput:
    """Output files on a file system this worker shares with the job (the local machine, or a
    cluster's shared file system): :meth:`read_output` reads the reference's paths."""

    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        path = {"stdout": ref.stdout_path, "stderr": ref.stderr_path}.get(stream)
        return self.read_file(path, offset, limit) if path else b""

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Read part of a file the job wrote (``b""`` when it does not exist)."""
        return read_file_part(path, offset, limit)
