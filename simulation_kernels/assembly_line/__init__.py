"""Production-line kernel: ``python -m simulation_kernels.assembly_line --config CFG --output DIR``.

From Python (e.g. inside a Dask task): :func:`run_replications`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["aggregate", "run_replications"]

_METRICS = ("throughput", "mean_lead_time", "energy_per_unit_kwh", "energy_kwh", "events")


def aggregate(reps: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation and 95 % half-width (normal) of the main metrics."""
    out: dict[str, dict[str, float]] = {}
    for key in _METRICS:
        vals = [float(r[key]) for r in reps if r.get(key) is not None and math.isfinite(float(r[key]))]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "ci95": 1.96 * std / math.sqrt(len(vals)), "n": len(vals)}
    return out


def run_replications(params: dict[str, Any], seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Run one replication per seed and aggregate them.

    :param params: ``assembly_line`` parameters (validated here; raw user values are fine).
    :param seeds: seeds to run; ``seed, seed + 1, ...`` (``replications`` of them) when ``None``.
    :return: ``{"replications": [...], "aggregate": {...}}``, deterministic for the seeds.
    :raises ValueError: on bad parameters or seeds.
    """
    from simulation_kernels.assembly_line.model import simulate
    from simulation_kernels.params import validate

    p = validate("assembly_line", params)
    if seeds is None:
        seeds = [p["seed"] + k for k in range(p["replications"])]
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"assembly_line: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    reps = [simulate(p, s) for s in seeds]
    return {"replications": reps, "aggregate": aggregate(reps)}
