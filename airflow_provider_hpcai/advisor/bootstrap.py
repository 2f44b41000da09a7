"""A small synthetic job history, to bootstrap the advisor where real history is too small.

CI and fresh installations have (almost) no finished jobs, yet the training DAG must train,
register and promote something. :func:`synthetic_history` draws a reproducible history of
recurring DAG tasks shaped like the published Slurm studies: run time and peak memory grow
with a problem-size parameter, vary by a task-specific noise, and users over-request by a
task-specific factor (time limits 2-6x the typical run, memory round amounts at about 20 %
efficiency). The tasks belong to the DAG :data:`SYNTHETIC_DAG` (``heat``, ``wave``,
``stencil``, ``io``; size parameter ``nx``), so the champion it yields only ever advises tasks
of that DAG: a real task never gets advice learned from made-up jobs. Records carry
``source="synthetic"`` and are never written to the history store.
"""

from __future__ import annotations

import math
import random

from airflow_provider_hpcai.advisor.history import JobRecord

__all__ = ["SYNTHETIC_DAG", "SYNTHETIC_TASKS", "synthetic_history"]

SYNTHETIC_DAG = "hpcai_synthetic"
#: task -> (typical run time at nx=256 in s, peak memory at nx=256 in bytes, noise, time over-request)
SYNTHETIC_TASKS: dict[str, tuple[float, float, float, float]] = {
    "heat": (120.0, 0.6e9, 0.10, 4.0),
    "wave": (300.0, 1.2e9, 0.15, 3.0),
    "stencil": (60.0, 0.3e9, 0.25, 6.0),
    "io": (200.0, 0.2e9, 0.40, 2.5),
}
_SIZES = (256, 512, 1024)
_GIB = 1024**3


def synthetic_history(n_jobs: int = 400, *, seed: int = 11, end_time: float = 1.7e9) -> list[JobRecord]:
    """``n_jobs`` finished jobs of :data:`SYNTHETIC_DAG`, in submission order, ending at ``end_time``.

    :param n_jobs: how many jobs (at least 8).
    :param seed: the random seed (same seed, same history).
    :param end_time: submission time of the last job (epoch s).
    """
    if n_jobs < 8:
        raise ValueError(f"n_jobs must be at least 8, got {n_jobs}")
    rng = random.Random(seed)
    tasks = list(SYNTHETIC_TASKS)
    gap = 900.0
    records = []
    for i in range(n_jobs):
        task = tasks[i % len(tasks)]
        run0, mem0, noise, over = SYNTHETIC_TASKS[task]
        nx = rng.choice(_SIZES)
        scale = nx / 256
        elapsed = run0 * scale * math.exp(rng.gauss(0.0, noise))
        peak = mem0 * scale**0.8 * math.exp(rng.gauss(0.0, noise / 2))
        limit = math.ceil(run0 * 4 * over / 60.0) * 60  # one request for every size, as users do
        memory = 2 ** math.ceil(math.log2(2 * mem0 * 4**0.8 / _GIB)) * _GIB  # 2x the largest, rounded up
        state = "TIMEOUT" if elapsed >= limit else "COMPLETED"
        records.append(JobRecord(
            job_id=f"syn{i}",
            submit_time=end_time - (n_jobs - 1 - i) * gap,
            state=state,
            elapsed_seconds=min(elapsed, float(limit)),
            requested_seconds=float(limit),
            max_rss_bytes=min(peak, float(memory)),
            requested_memory_bytes=float(memory),
            cpus=4,
            total_cpu_seconds=elapsed * 3.5,
            user="synthetic",
            dag_id=SYNTHETIC_DAG,
            task_id=task,
            kernel=task,
            size_params={"nx": float(nx)},
            source="synthetic",
        ))
    return records
