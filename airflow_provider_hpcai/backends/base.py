"""The contract every execution backend (Slurm, Kubernetes, local) fulfils.

Operators drive a backend through these methods only; adding a backend means one module
implementing :class:`JobBackend`, one entry in :data:`airflow_provider_hpcai.backends.BACKENDS`,
and one line in the shared backend contract tests.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

from airflow_provider_hpcai.slurm.states import JobStatus
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["JobBackend", "JobRef"]


@dataclasses.dataclass(frozen=True)
class JobRef:
    """Where a submitted job can be found again (JSON-safe, stored across task tries).

    :param backend: the backend's name.
    :param job_id: the backend's id for the job.
    :param tag: the provider's reattach tag.
    :param stdout_path: the job's output (a path on the cluster, or ``None``).
    :param stderr_path: the job's error output.
    :param extra: backend-specific details (namespace, workdir...).
    """

    backend: str
    job_id: str
    tag: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRef:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name in data})


class JobBackend(abc.ABC):
    """Runs :class:`JobSpec` jobs somewhere.

    :param conn_id: the Airflow connection the backend uses (``None``: its default).
    """

    name: ClassVar[str]
    #: Whether :meth:`trigger` can hand the wait to the triggerer.
    can_defer: ClassVar[bool] = False

    def __init__(self, conn_id: str | None = None, **options: Any) -> None:
        self.conn_id = conn_id
        self.options = options

    @abc.abstractmethod
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        """Start the job; return where to find it."""

    @abc.abstractmethod
    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        """A still-active job carrying ``tag`` (for reattaching after a crash), or ``None``."""

    @abc.abstractmethod
    def status(self, ref: JobRef) -> JobStatus | None:
        """The job's current status (``None`` if the backend no longer knows it)."""

    @abc.abstractmethod
    def wait(self, ref: JobRef, *, poll_interval: float, log: Any) -> JobStatus:
        """Block until the job ends (non-deferrable mode), copying its output to ``log``."""

    def trigger(self, ref: JobRef, *, poll_interval: float, echo: dict[str, Any] | None = None) -> Any:
        """A trigger that waits for the job in the triggerer (only when :attr:`can_defer`).

        ``echo`` must come back unchanged in the trigger's event (as ``event["echo"]``).
        """
        raise NotImplementedError(f"the {self.name} backend cannot defer")

    @abc.abstractmethod
    def result(self, ref: JobRef, *, state: str, exit_code: int | None, requested: dict[str, Any],
               offsets: dict[str, int] | None, log: Any) -> dict[str, Any]:
        """The finished job's result (accounting, failure kind), after copying the rest of its output to ``log``."""

    @abc.abstractmethod
    def cancel(self, ref: JobRef) -> None:
        """Stop the job; no error if it already ended."""

    def job_output(self, ref: JobRef, max_bytes: int = 16 * 1024 * 1024) -> str | None:
        """The job's whole standard output, for backends without a file reader (``None``: unknown)."""
        return None

    def stderr_tail(self, ref: JobRef, max_bytes: int = 4096) -> str:
        """The end of the job's error output (for exception messages)."""
        return ""
