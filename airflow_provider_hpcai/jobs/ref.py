"""Where a submitted job can be found again: the one reference every backend hands out."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["JobRef"]


@dataclasses.dataclass(frozen=True)
class JobRef:
    """Where a submitted job can be found again (JSON-safe, stored across task tries).

    :param backend: the backend's name (a key of :data:`airflow_provider_hpcai.backends.BACKENDS`).
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
