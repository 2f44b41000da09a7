"""``python -m simulation_kernels.assembly_line --config CFG.json --output DIR``.

Under MPI the replications are dealt round-robin over the ranks and gathered on rank 0.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from simulation_kernels.common.cli import RunContext, run_cli
from simulation_kernels.params import KERNELS


def run(p: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Run this rank's share of the replications; rank 0 returns the summary."""
    from simulation_kernels.assembly_line import aggregate
    from simulation_kernels.assembly_line.model import simulate
    from simulation_kernels.common.config import write_json
    from simulation_kernels.common.progress import ProgressReporter

    seeds = [p["seed"] + k for k in range(p["replications"])]
    mine = seeds[ctx.rank :: ctx.size]
    progress = ProgressReporter(len(mine), lines=p["progress_lines"], enabled=ctx.is_root, unit="replication")
    reps = []
    start = time.perf_counter()
    for k, seed in enumerate(mine):
        reps.append(simulate(p, seed))
        progress.update(k + 1)
    elapsed = time.perf_counter() - start
    if ctx.comm is not None:
        gathered = ctx.comm.gather((reps, elapsed), root=0)
        if not ctx.is_root:
            return {}
        reps = sorted((r for part, _ in gathered for r in part), key=lambda r: r["seed"])
        elapsed = max(e for _, e in gathered)
    write_json(ctx.output / "replications.json", {"replications": reps})
    events = sum(r["events"] for r in reps)
    agg = aggregate(reps)
    return {
        "replications": len(reps),
        "seeds": [r["seed"] for r in reps],
        "aggregate": agg,
        "throughput": agg["throughput"]["mean"],
        "mean_lead_time": agg.get("mean_lead_time", {}).get("mean"),
        "energy_per_unit_kwh": agg.get("energy_per_unit_kwh", {}).get("mean"),
        "utilisation": [
            sum(r["stations"][i]["utilisation"] for r in reps) / len(reps) for i in range(len(p["stations"]))
        ],
        "events": events,
        "events_per_s": events / elapsed if elapsed > 0 else None,
        "outputs": ["replications.json"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the production-line kernel."""
    return run_cli("assembly_line", KERNELS["assembly_line"], run, argv)


if __name__ == "__main__":
    sys.exit(main())
