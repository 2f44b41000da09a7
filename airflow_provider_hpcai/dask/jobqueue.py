"""Slurm worker jobs of dask-jobqueue: the cluster class the hook starts, and cancelling jobs by tag.

dask is imported inside :func:`slurm_cluster_class` only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from airflow_provider_hpcai.jobs.states import JobStatus, Phase

__all__ = ["active_jobs_with_tag", "cancel_active_jobs", "job_listeners", "slurm_cluster_class"]

#: tag -> callback told each worker job id as dask-jobqueue submits it (adaptive jobs come and go
#: between two progress polls, so polling alone would miss some).
job_listeners: dict[str, Callable[[str], None]] = {}


class TaggedJobs(Protocol):
    """What this module needs of a Slurm hook (``SlurmHook`` is one): find jobs by tag, cancel one."""

    def find_jobs_by_tag(self, tag: str) -> Sequence[JobStatus]: ...

    def cancel(self, job_id: str) -> None: ...


_TAG_IN_HEADER = re.compile(r"--comment=hpcai-tag=(hpcai-[0-9a-f]{20})\b")


@functools.cache
def slurm_cluster_class() -> type:
    """``SLURMCluster`` whose jobs report their ids to :data:`job_listeners` and themselves closed after ``scancel``.

    dask-jobqueue 0.9's ``Job.close`` cancels the job but leaves its status ``running``; with
    distributed 2026.x, ``SpecCluster._close`` then fails an assertion half-way (after the jobs
    were cancelled, before its own clean-up), leaving the cluster in ``closing``.
    """
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("dask", "distributed", "dask_jobqueue")
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import SLURMJob
    from distributed.core import Status

    class _HpcaiSLURMJob(SLURMJob):
        async def start(self) -> None:
            await super().start()
            match = _TAG_IN_HEADER.search(self.job_header or "")
            listener = job_listeners.get(match.group(1)) if match else None
            if listener is not None and self.job_id:
                listener(str(self.job_id))

        async def close(self) -> None:
            await super().close()
            self.status = Status.closed

    class HpcaiSLURMCluster(SLURMCluster):
        job_cls = _HpcaiSLURMJob

    return HpcaiSLURMCluster


def active_jobs_with_tag(slurm: TaggedJobs, tag: str) -> list[JobStatus]:
    """Jobs carrying ``tag`` that are still queued or running (one ``squeue`` call; ``COMPLETING`` ones are ending)."""
    return [j for j in slurm.find_jobs_by_tag(tag) if j.phase is Phase.ACTIVE and j.state != "COMPLETING"]


def cancel_active_jobs(slurm: TaggedJobs, tag: str) -> list[JobStatus]:
    """``scancel`` every job :func:`active_jobs_with_tag` finds; returns them (oldest first)."""
    jobs = sorted(active_jobs_with_tag(slurm, tag), key=lambda j: (len(str(j.job_id)), str(j.job_id)))
    for job in jobs:
        slurm.cancel(job.job_id)
    return jobs
