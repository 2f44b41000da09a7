"""Worker-hours of the manufacturing sweep on an adaptive and on a fixed Dask cluster, side by side.

One run starts, through the provider's ``DaskHook`` (what ``@task.dask`` does in the DAG), the
same sweep twice on the local Slurm cluster (dask-jobqueue worker jobs; ``--cluster local`` for a
``LocalCluster`` instead):

* **fixed**: ``--max-jobs`` worker jobs held from the start to the end (a cluster sized for the peak);
* **adaptive**: ``adaptive = {minimum: --min-jobs, maximum: --max-jobs}``, dask-jobqueue's own
  ``adapt()`` growing and shrinking it (``--target``, ``--scale-down-wait``).

For each it prints the wall time, the worker jobs submitted, the peak, worker-hours as the
scheduler saw them (worker joined -> left) and, on Slurm, as accounting bills them (the sum of
the worker jobs' ``ElapsedRaw`` in ``sacct``), and whether the sweep's rows are identical. Ends
with one JSON line. Not a test: figures depend on the machine's load (run it under ``nice``).

    nice -n 10 .venv/bin/python bench/bench_dask_adaptive.py                 # about 3 minutes
    nice -n 10 .venv/bin/python bench/bench_dask_adaptive.py --quick         # about 1.5 minutes
    .venv/bin/python bench/bench_dask_adaptive.py --cluster local --json out/dask_adaptive.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SWEEP = {"buffers": [0, 2, 4, 8, 16], "staffing": [1, 2, 3],
         "scenarios": ["no_shortage", "mild_shortage", "severe_shortage"]}


def _slurm_env() -> None:
    """Export ``scripts/local-slurm env`` (SLURM_CONF, the connections) when not already set."""
    if os.environ.get("AIRFLOW_CONN_SLURM_LOCAL"):
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(["bash", os.path.join(root, "scripts", "local-slurm"), "env"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            os.environ[key] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True,
                                             text=True).stdout


def _extras(args: argparse.Namespace, adaptive: bool, job_name: str) -> dict[str, Any]:
    bounds = {"minimum": args.min_jobs, "maximum": args.max_jobs, "target_duration": f"{args.target:g}s",
              "scale_down_wait": f"{args.scale_down_wait:g}s", "interval": "1s"}
    if args.cluster == "local":
        return {"cluster": "local", "n_workers": args.max_jobs, "memory_limit": "1GiB",
                **({"adaptive": bounds} if adaptive else {})}
    return {"cluster": "slurm", "slurm_conn_id": "slurm_local", "cores": 1, "memory": "1GiB",
            "walltime": "00:20:00", "queue": args.partition, "job_name": job_name, "worker_timeout": 180,
            "jobs": args.max_jobs, "wait_for_workers": args.min_jobs if adaptive else args.max_jobs,
            **({"adaptive": bounds} if adaptive else {})}


def _sacct_hours(job_ids: list[str], within: float = 30.0) -> float | None:
    """Worker-hours accounting bills: the sum of the jobs' ElapsedRaw once they have all ended."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    deadline = time.monotonic() + within
    while True:
        out = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "-j", ",".join(job_ids),
                              "--format=JobID,State,ElapsedRaw"], capture_output=True, text=True).stdout
        rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
        done = {r[0] for r in rows if r[1] not in ("RUNNING", "PENDING", "COMPLETING")}
        if done >= set(job_ids) or time.monotonic() > deadline:
            return round(sum(int(r[2] or 0) for r in rows) / 3600.0, 6)
        time.sleep(1)


def run(args: argparse.Namespace, adaptive: bool) -> dict[str, Any]:
    from airflow_provider_hpcai.casestudies.manufacturing import run_sweep, sweep_points
    from airflow_provider_hpcai.hooks.dask import DaskHook

    label = "adaptive" if adaptive else "fixed"
    job_name = f"hpcai-bench-{label[:3]}-{uuid.uuid4().hex[:4]}"
    hook = DaskHook("dask_bench", extras=_extras(args, adaptive, job_name))
    points = sweep_points(SWEEP)
    started = time.monotonic()
    with hook.get_client() as client:
        ready = time.monotonic() - started
        rows = run_sweep(client, points, replications=args.replications, horizon=args.horizon, warmup=200.0)
        swept = time.monotonic() - started
    wall = time.monotonic() - started
    usage = hook.usage() or {}
    return {"cluster": label, "wall_s": round(wall, 1), "ready_s": round(ready, 1), "sweep_s": round(swept, 1),
            "worker_jobs": len(hook.worker_job_ids) if args.cluster == "slurm" else None,
            "workers_started": usage.get("workers_started"), "peak_workers": usage.get("peak_workers"),
            "worker_hours": usage.get("worker_hours"),
            "sacct_worker_hours": _sacct_hours(hook.worker_job_ids) if args.cluster == "slurm" else None,
            "rows": rows, "series": hook.timeline.series() if hook.timeline else []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", choices=["slurm", "local"], default="slurm")
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--min-jobs", type=int, default=1)
    parser.add_argument("--max-jobs", type=int, default=3)
    parser.add_argument("--target", type=float, default=5.0, help="adaptive target duration (s)")
    parser.add_argument("--scale-down-wait", type=float, default=10.0, help="idle seconds before a worker goes")
    parser.add_argument("--replications", type=int, default=96)
    parser.add_argument("--horizon", type=float, default=4000.0)
    parser.add_argument("--quick", action="store_true", help="48 replications")
    parser.add_argument("--adaptive-first", action="store_true", help="run the adaptive cluster first")
    parser.add_argument("--json", default=None, help="also write the JSON to this file")
    parser.add_argument("--plot", default=None, help="write a PNG of the workers over time to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.replications = 48
    if args.cluster == "slurm":
        if shutil.which("sbatch") is None:
            print("error: sbatch is not on PATH: start the local cluster (scripts/local-slurm up) or use "
                  "--cluster local", file=sys.stderr)
            return 2
        _slurm_env()
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    print(f"manufacturing sweep: 45 points x {args.replications} replications, horizon {args.horizon:g} min; "
          f"{args.cluster} cluster, fixed {args.max_jobs} vs adaptive {args.min_jobs}-{args.max_jobs} "
          f"(target {args.target:g}s, scale down after {args.scale_down_wait:g}s idle)")
    if args.adaptive_first:  # to see the order's effect (caches, the machine's load)
        results = list(reversed([run(args, adaptive=True), run(args, adaptive=False)]))
    else:
        results = [run(args, adaptive=False), run(args, adaptive=True)]
    same = results[0].pop("rows") == results[1].pop("rows")
    labels = {"fixed": f"fixed ({args.max_jobs})", "adaptive": f"adaptive ({args.min_jobs}-{args.max_jobs})"}
    series = {labels[r["cluster"]]: r.pop("series") for r in results}
    head = (f"{'cluster':<10}{'wall s':>8}{'sweep s':>9}{'jobs':>6}{'workers':>9}{'peak':>6}"
            f"{'worker-h (scheduler)':>22}{'worker-h (sacct)':>18}")
    print(head)
    for r in results:
        sacct = "-" if r["sacct_worker_hours"] is None else f"{r['sacct_worker_hours']:.4f}"
        jobs = "-" if r["worker_jobs"] is None else str(r["worker_jobs"])
        print(f"{r['cluster']:<10}{r['wall_s']:>8.1f}{r['sweep_s']:>9.1f}{jobs:>6}{r['workers_started']:>9}"
              f"{r['peak_workers']:>6}{r['worker_hours']:>22.4f}{sacct:>18}")
    fixed, adaptive = results
    key = "sacct_worker_hours" if fixed["sacct_worker_hours"] else "worker_hours"
    saved = 1.0 - adaptive[key] / fixed[key] if fixed[key] else 0.0
    verdict = f"{100 * saved:.0f} % fewer" if saved >= 0 else f"{-100 * saved:.0f} % more"
    print(f"adaptive used {verdict} worker-hours than the fixed cluster ({key}); sweep rows identical: {same}")
    out = {"bench": "dask_adaptive", "cluster": args.cluster, "replications": args.replications,
           "min_jobs": args.min_jobs, "max_jobs": args.max_jobs, "target_s": args.target,
           "scale_down_wait_s": args.scale_down_wait, "adaptive_first": args.adaptive_first, "results": results, "saved_fraction": round(saved, 4),
           "rows_identical": same}
    if args.plot:
        from airflow_provider_hpcai.casestudies.plots import workers_over_time

        print("plot: " + workers_over_time(series, args.plot,
                                           title=f"Manufacturing sweep on {args.cluster}: workers over time"))
        out["plot"] = os.path.abspath(args.plot)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)
    print(json.dumps(out))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
