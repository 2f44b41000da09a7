"""The operations every Slurm transport offers, and what they share.

A transport talks to one cluster (the CLI on this host, the CLI over SSH, or slurmrestd)
and knows nothing of Airflow. :class:`SlurmTransport` is the seam tests fake.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from airflow_provider_hpcai.exceptions import ControllerUnavailableError, TransportError
from airflow_provider_hpcai.slurm.states import JobStatus
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["TRANSIENT_MARKERS", "SlurmTransport", "retry_call"]

T = TypeVar("T")

#: Text in a failed command's stderr that means "try again later", not "you asked wrongly".
TRANSIENT_MARKERS = (
    "unable to contact slurm controller",
    # squeue --only-job-state (24.05+) with slurmctld down says only this (seen on 24.11.5)
    "unable to query jobs state",
    "socket timed out",
    "connection refused",
    "connection reset",
    "slurm_persist_conn_open",
    "temporarily unavailable",
    "resource temporarily unavailable",
    "slurmdbd",
    "zero bytes were transmitted",
    "transient",
    "controller is busy",
    "timed out",
    "no route to host",
    "broken pipe",
    "ssh session not active",
)


def is_transient(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


def retry_call(
    func: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    what: str = "the Slurm call",
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, TransportError], None] | None = None,
) -> T:
    """Call ``func``, retrying transient :class:`TransportError` with full-jitter backoff.

    :raises ControllerUnavailableError: when every attempt failed transiently.
    :raises TransportError: at once, for a non-transient failure.
    """
    last: TransportError | None = None
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except TransportError as err:
            if not err.retryable:
                raise
            last = err
            if attempt == attempts:
                break
            if on_retry:
                on_retry(attempt, err)
            sleep(random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1))))
    assert last is not None
    raise ControllerUnavailableError(
        f"{what} failed {attempts} times in a row; the controller or its API seems down. "
        "The job itself may be fine: once the cluster answers, clear the task to reattach. "
        f"Last answer: {str(last).splitlines()[0] if str(last) else type(last).__name__}",
        command=last.command,
        returncode=last.returncode,
        stdout=last.stdout,
        stderr=last.stderr,
        retryable=True,
        credentials=last.credentials,  # an answer that may also be a refused token says so
    ) from last


class SlurmTransport(abc.ABC):
    """One way of talking to one Slurm cluster.

    Implementations raise :class:`TransportError` (``retryable=True`` for outages) and never
    put credentials in messages.
    """

    #: Name used in connection extras (``transport``).
    name: str = ""

    @abc.abstractmethod
    def submit(self, spec: JobSpec, workdir: str) -> str:
        """Submit ``spec``; return the job id."""

    @abc.abstractmethod
    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The current status of many jobs in ONE controller query.

        Jobs the controller no longer knows are absent from the result.
        """

    @abc.abstractmethod
    def my_jobs(self) -> dict[str, JobStatus]:
        """All jobs of the connection's user that the controller still knows (one query)."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel a job (no error if it already ended)."""

    #: Whether :meth:`release` can release one element of a held array (``<id>_<index>``).
    releases_elements: bool = False

    def release(self, job_id: str) -> None:
        """Release a held job or array element (transports that cannot: an error saying so)."""
        raise TransportError(f"the {self.name} transport cannot release held job {job_id}")

    @abc.abstractmethod
    def accounting(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Accounting records (job plus steps) as :func:`~airflow_provider_hpcai.slurm.commands.parse_sacct` shapes them."""

    @abc.abstractmethod
    def accounting_since(self, since: str) -> dict[str, dict[str, Any]]:
        """Accounting of the user's jobs that started since ``since`` (``YYYY-MM-DDTHH:MM:SS``), one query."""

    @abc.abstractmethod
    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Bytes of a file on the cluster (job output), from ``offset``; empty if absent."""

    @abc.abstractmethod
    def nodes(self) -> list[dict[str, Any]]:
        """Node records (name, partition, state, CPUs, memory)."""

    @abc.abstractmethod
    def partitions(self) -> dict[str, dict[str, Any]]:
        """Partition limits keyed by name."""

    def ensure_dir(self, path: str) -> None:
        """Create ``path`` on the cluster if the transport can (the job writes its output there)."""

    @abc.abstractmethod
    def default_workdir(self) -> str:
        """Where jobs run (and write output) when the connection names no ``work_dir``."""

    def close(self) -> None:
        """Release connections (SSH sessions, HTTP pools)."""
