"""The provider's OpenLineage run facet (imports the OpenLineage client: load it only when lineage is emitted)."""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, field
from openlineage.client.facet_v2 import RunFacet

__all__ = ["HpcJobRunFacet"]


@define
class HpcJobRunFacet(RunFacet):
    """The HPC job behind an Airflow task run: where it ran, what it asked for, what it used.

    :param jobId: the scheduler's job id (Slurm job id, Kubernetes Job name, local job id).
    :param backend: ``slurm``, ``kubernetes`` or ``local``.
    :param cluster: the cluster (Slurm: the connection's ``cluster`` extra or host; Kubernetes:
        the connection's ``cluster`` extra or id; local: the host name).
    :param state: the job's final state (``COMPLETED``, ``FAILED``, ``TIMEOUT``...).
    :param exitCode: the job's exit code.
    :param failure: the provider's failure class (``oom``, ``timeout``, ``node_failure``...) or ``None``.
    :param requested: the resources asked for (``Resources.to_dict()``).
    :param used: what accounting measured: ``elapsedSeconds``, ``maxRssBytes``,
        ``totalCpuSeconds``, ``nodeList``.
    :param location: backend details (Kubernetes ``namespace`` and ``kind``; Slurm ``workdir``).
    """

    jobId: str  # OpenLineage facets are camelCase
    backend: str
    cluster: str | None = None
    state: str | None = None
    exitCode: int | None = None
    failure: str | None = None
    requested: dict[str, Any] = field(factory=dict)
    used: dict[str, Any] = field(factory=dict)
    location: dict[str, Any] = field(factory=dict)

    _additional_skip_redact: ClassVar[list[str]] = ["jobId", "backend", "cluster", "state", "exitCode", "failure", "requested", "used",
                               "location"]
