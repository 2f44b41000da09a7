"""A digest of what a job runs, so a later try never mistakes another job's work for its own.

A task's tag names *where* in a DAG run a job belongs (dag, task, run, map index); the digest
names *what* it runs: the rendered script, its environment, the resources asked for, the
container image (and the whole container: image, mounts, working directory,
environment, runtime) and the array. A cleared mapped task whose upstream list changed keeps its map
index (and tag) but gets another digest, so it neither adopts nor returns the result of the job
of the item that held its index before.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_hpcai.spec import JobSpec

__all__ = ["submission_digest"]


def submission_digest(spec: JobSpec) -> str:
    """The digest of what ``spec`` runs (16 hex digits; name, tag and working folder left out)."""
    payload = {
        "script": spec.script,
        "environment": dict(sorted(spec.environment.items())),
        "resources": spec.resources.to_dict(),
        "image": spec.image,
        "array": spec.array,
    }
    if spec.container is not None:  # only when set: digests of jobs without one stay as they were
        payload["container"] = spec.container.to_dict()
    if spec.components:  # a hetjob's further groups (only when set, as the container)
        payload["components"] = [component.to_dict() for component in spec.components]
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
