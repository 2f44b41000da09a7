"""What a finished Slurm job used of what it was given: one rule for sacct, slurmrestd and hetjob folds."""

from __future__ import annotations

from typing import Any

__all__ = ["efficiency"]


def efficiency(*, total_cpu_seconds: float | None, elapsed_seconds: float | None, alloc_cpus: int | None,
               max_rss_bytes: int | None, alloc_memory_bytes: int | None, gpus: int,
               gpu_usage: dict[str, Any] | None, energy_joules: int | None) -> dict[str, Any]:
    """What a finished job used of what it was given; the same keys and meaning on every transport.

    ``cpu_percent``: CPU time / (elapsed x allocated CPUs), as ``seff`` reports it. ``memory_percent``:
    the peak RSS of the largest step / the memory allocated to the job. ``gpus``: GPUs allocated
    (``gres/gpu`` TRES; 0 without). ``gpu_usage``: ``gpu_util_percent`` and ``gpu_mem_bytes`` where
    accounting gathers GPU usage (``AcctGatherGpu``/``gres/gpu*`` TRES), else ``None``.
    ``consumed_energy_joules``: where an energy plugin records it (``None`` where accounting has
    no figure or records 0). A figure accounting lacks is ``None``, never a guess.
    """
    cpu = None
    if total_cpu_seconds is not None and elapsed_seconds and alloc_cpus:
        cpu = round(100.0 * total_cpu_seconds / (elapsed_seconds * alloc_cpus), 1)
    memory = round(100.0 * max_rss_bytes / alloc_memory_bytes, 1) if max_rss_bytes and alloc_memory_bytes else None
    return {"cpu_percent": cpu, "memory_percent": memory, "gpus": int(gpus or 0), "gpu_usage": gpu_usage,
            "consumed_energy_joules": energy_joules if energy_joules and energy_joules > 0 else None}
