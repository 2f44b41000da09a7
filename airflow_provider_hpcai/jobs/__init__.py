"""The neutral job layer: what every backend's jobs have in common.

States and phases (:mod:`.states`), the outcome classifier (:mod:`.classify`), the result and
its failure (:mod:`.outcome`), the output rule and resume state (:mod:`.output`), the trigger
event (:mod:`.event`), the job reference (:mod:`.ref`), the submission digest (:mod:`.digest`)
and the one wait (:mod:`.watch`). It imports no scheduler: Slurm, Kubernetes, Grid Engine and
the local backend translate into it.
"""

from __future__ import annotations

from airflow_provider_hpcai.exceptions import (
    JobCancelled,
    JobFailed,
    JobNodeFailure,
    JobNotFound,
    JobOutOfMemory,
    JobPreempted,
    JobTimeout,
)
from airflow_provider_hpcai.jobs.states import JobStatus, Phase, phase_of

__all__ = ["JobCancelled", "JobFailed", "JobNodeFailure", "JobNotFound", "JobOutOfMemory", "JobPreempted",
           "JobStatus", "JobTimeout", "Phase", "phase_of"]
