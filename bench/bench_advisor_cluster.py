"""The advisor on the real local Slurm cluster: a scaled-down trace replay, submitted twice.

A window of consecutive jobs is sampled from the KTH-SP2 trace (``/work/shared/traces``; a
synthetic trace-like workload when it is absent). The first ``--history`` jobs train the
advisor (they are not submitted); the next ``--jobs`` are replayed as ``sleep`` jobs through
the project's :class:`SlurmHook`, with times scaled down by ``--scale`` (trace seconds per
replay second), CPUs equal to the trace's processors (the node declares 256 CPUs, so a queue
forms) and arrivals compressed into a ``--window`` of seconds:

* pass ``users``: each job's limit is its user's request (rounded up to whole minutes, as Slurm
  does);
* pass ``advisor``: the limit is what :func:`~airflow_provider_hpcai.policy.decision.advise`
  decides in enforce mode with the trained champion (what the task policy applies). A job
  killed at its limit is resubmitted at once with its user's request (the retry), and counted.

For each pass: mean wait, mean bounded slowdown (tau = 10 s; response of the final attempt
from the first submission over the run time), makespan, reserved-but-unused core-seconds
(``cpus x (limit - elapsed)`` of final attempts plus ``cpus x elapsed`` of killed attempts) and
kills. Human lines, then one JSON line. Only this run's jobs (name prefix ``hpcai-bcl-<id>``)
are ever cancelled; other people's jobs on the cluster do share the node, so run it when the
cluster is quiet.

    eval "$(bash scripts/local-slurm env)"
    .venv/bin/python bench/bench_advisor_cluster.py [--quick] [--jobs 200] [--scale 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRACE = "/work/shared/traces/KTH-SP2-1996-2.1.swf"
TAU = 10.0
MAX_CPUS = 128


def sample_jobs(n_history: int, n_jobs: int, seed: int) -> tuple[list[dict[str, Any]], str]:
    """Consecutive trace jobs (run <= 1 h, so the replay stays short): history first, then the replay."""
    if os.path.exists(TRACE):
        from airflow_provider_hpcai.advisor.swf import iter_valid, read_swf

        rows = [dict(submit=float(r.submit_time), run=float(r.run_time), request=float(r.requested_time),
                     procs=int(r.processors), user=f"u{r.user_id}")
                for r in iter_valid(read_swf(TRACE)) if r.run_time and r.requested_time and r.run_time <= 3600
                and r.run_time <= r.requested_time]
        source = os.path.basename(TRACE)
    else:  # trace-like: users with their own typical run time and over-request factor
        rng = random.Random(seed)
        users = [(rng.lognormvariate(math.log(300), 1.0), rng.uniform(1.5, 8.0)) for _ in range(30)]
        rows, t = [], 0.0
        for _ in range(n_history + n_jobs + 100):
            u = rng.randrange(len(users))
            typical, over = users[u]
            run = min(3600.0, typical * rng.lognormvariate(0, 0.4))
            t += rng.expovariate(1 / 200)
            rows.append(dict(submit=t, run=max(run, 1.0), request=math.ceil(max(run, typical * over) / 60) * 60,
                             procs=rng.choice([1, 2, 4, 8, 16, 32]), user=f"u{u}"))
        source = "synthetic"
    start = random.Random(seed).randrange(0, max(1, len(rows) - n_history - n_jobs))
    window = rows[start: start + n_history + n_jobs]
    return window, source


def scaled(job: dict[str, Any], scale: float) -> dict[str, Any]:
    """Run time in replay seconds (>= 1), the user's limit in whole minutes (>= 1), CPUs capped."""
    run = max(1.0, round(job["run"] / scale, 1))
    limit = max(60, math.ceil(job["request"] / scale / 60) * 60)
    return {**job, "run_s": run, "limit_s": limit, "cpus": max(1, min(MAX_CPUS, job["procs"]))}


def train_model(history: list[dict[str, Any]]) -> Any:
    from airflow_provider_hpcai.advisor.history import JobRecord
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.advisor.online import train_compact

    records = [JobRecord(job_id=str(i), submit_time=j["submit"], state="COMPLETED", elapsed_seconds=j["run_s"],
                         requested_seconds=float(j["limit_s"]), cpus=j["cpus"], user=j["user"], source="bench")
               for i, j in enumerate(history)]
    model, _ = train_compact(records, (TargetSpec(name="runtime", quantile=0.96, floor=60.0),), version="bench")
    return model


def advised_limits(jobs: list[dict[str, Any]], model: Any) -> list[int]:
    from airflow_provider_hpcai.policy.decision import Bounds, advise
    from airflow_provider_hpcai.resources import Resources

    limits = []
    for job in jobs:
        requested = Resources(ntasks=job["cpus"], time_limit=job["limit_s"])
        decision = advise({"user": job["user"]}, requested, model, mode="enforce", bounds=Bounds(min_time_s=60))
        limit = decision.applied.time_limit_seconds or job["limit_s"]
        limits.append(max(60, math.ceil(limit / 60) * 60))  # Slurm rounds limits up to minutes
    return limits


def run_pass(hook: Any, jobs: list[dict[str, Any]], limits: list[int], *, prefix: str, window: float,
             workdir: str, deadline: float) -> dict[str, Any]:
    """Submit the jobs at their (compressed) arrival times, resubmit killed ones, account at the end."""
    from airflow_provider_hpcai.resources import Resources
    from airflow_provider_hpcai.slurm.states import Phase
    from airflow_provider_hpcai.spec import JobSpec

    span = max(jobs[-1]["submit"] - jobs[0]["submit"], 1.0)
    arrivals = [(j["submit"] - jobs[0]["submit"]) / span * window for j in jobs]
    attempts: dict[int, list[tuple[str, int]]] = {i: [] for i in range(len(jobs))}
    owner: dict[str, int] = {}
    first_submit: dict[int, float] = {}
    t0 = time.time()

    def submit(i: int, limit: int) -> None:
        job = jobs[i]
        spec = JobSpec(name=f"{prefix}-{i}", script=f"sleep {job['run_s']}\n",
                       resources=Resources(ntasks=job["cpus"], time_limit=limit, memory="20M"))
        job_id = hook.submit(spec, workdir=workdir)
        attempts[i].append((job_id, limit))
        owner[job_id] = i
        first_submit.setdefault(i, time.time())

    pending = list(range(len(jobs)))
    live: set[str] = set()
    kills = 0
    while pending or live:
        if time.time() > deadline:
            raise TimeoutError("the pass ran past its time budget")
        now = time.time() - t0
        while pending and arrivals[pending[0]] <= now:
            i = pending.pop(0)
            submit(i, limits[i])
            live.add(attempts[i][-1][0])
        if live:
            for job_id, status in hook.get_statuses(sorted(live, key=int)).items():
                if status.phase is Phase.ACTIVE:
                    continue
                live.discard(job_id)
                if status.state.startswith("TIMEOUT"):
                    kills += 1
                    i = owner[job_id]
                    submit(i, jobs[i]["limit_s"])  # the retry asks for the user's request
                    live.add(attempts[i][-1][0])
        time.sleep(1.0)
    time.sleep(2.0)  # let accounting catch up with the last ends
    ids = [job_id for tries in attempts.values() for job_id, _ in tries]
    acct = hook.get_conn().accounting(ids)
    return figures(jobs, attempts, acct, first_submit, kills)


def _epoch(text: str | None) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def figures(jobs: list[dict[str, Any]], attempts: dict[int, list[tuple[str, int]]], acct: dict[str, Any],
            first_submit: dict[int, float], kills: int) -> dict[str, Any]:
    waits, bslds, unused, starts, ends = [], [], 0.0, [], []
    for i, tries in attempts.items():
        cpus = jobs[i]["cpus"]
        for n, (job_id, limit) in enumerate(tries):
            record = acct.get(job_id, {})
            elapsed = float(record.get("elapsed_seconds") or 0.0)
            if n < len(tries) - 1:  # a killed attempt: all of it wasted
                unused += cpus * elapsed
                continue
            start, end = _epoch(record.get("start")), _epoch(record.get("end"))
            submitted = _epoch(acct.get(tries[0][0], {}).get("submit")) or first_submit[i]
            if start is None or end is None:
                continue
            unused += cpus * max(0.0, limit - elapsed)
            waits.append(start - submitted)
            bslds.append(max(1.0, (end - submitted) / max(jobs[i]["run_s"], TAU)))
            starts.append(submitted)
            ends.append(end)
    return {
        "jobs": len(jobs),
        "accounted": len(waits),
        "mean_wait_s": sum(waits) / max(len(waits), 1),
        "mean_bsld": sum(bslds) / max(len(bslds), 1),
        "makespan_s": (max(ends) - min(starts)) if ends else None,
        "unused_core_s": unused,
        "kills": kills,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 jobs, 20 s window")
    parser.add_argument("--jobs", type=int, default=200, help="jobs replayed per pass")
    parser.add_argument("--history", type=int, default=2000, help="earlier trace jobs the advisor trains on")
    parser.add_argument("--scale", type=float, default=20.0, help="trace seconds per replay second")
    parser.add_argument("--window", type=float, default=90.0, help="seconds over which jobs arrive")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--budget", type=float, default=330.0, help="seconds allowed per pass")
    parser.add_argument("--conn", default=None, help="Slurm connection id (default: the CLI on this host)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.window, args.budget = 30, 20.0, 240.0

    from airflow_provider_hpcai.hooks.slurm import SlurmHook, build_transport

    window, source = sample_jobs(args.history, args.jobs, args.seed)
    window = [scaled(j, args.scale) for j in window]
    history, replay = window[: args.history], window[args.history:]
    model = train_model(history)
    plans = {"users": [j["limit_s"] for j in replay], "advisor": advised_limits(replay, model)}
    run_id = uuid.uuid4().hex[:6]
    hook = (SlurmHook(args.conn) if args.conn else
            SlurmHook(transport=build_transport({"transport": "local"}, login=None, password=None)))
    workdir = tempfile.mkdtemp(prefix="hpcai-bcl-")
    os.chmod(workdir, 0o1777)
    results: dict[str, Any] = {}
    submitted: list[str] = []
    try:
        for name, limits in plans.items():
            prefix = f"hpcai-bcl-{run_id}-{name}"
            began = time.time()
            results[name] = run_pass(hook, replay, limits, prefix=prefix, window=args.window, workdir=workdir,
                                     deadline=began + args.budget)
            results[name]["pass_s"] = time.time() - began
            results[name]["mean_limit_s"] = sum(limits) / len(limits)
    finally:  # cancel only this run's jobs that are still alive
        from airflow_provider_hpcai.slurm.states import Phase

        ours = _our_ids(hook, run_id)
        for job_id, status in hook.get_conn().my_jobs().items():
            if status.phase is Phase.ACTIVE and job_id in ours:
                hook.cancel(job_id)
                submitted.append(job_id)
        shutil.rmtree(workdir, ignore_errors=True)
    total_cpu_s = sum(j["cpus"] * j["run_s"] for j in replay)
    print(f"workload: {source}, {len(replay)} jobs replayed (after {len(history)} for training), scale 1/{args.scale:g}, "
          f"arrivals over {args.window:g} s, {total_cpu_s:.0f} core-s of work on a 256-CPU node")
    for name, r in results.items():
        print(f"{name:8s} mean limit {r['mean_limit_s']:6.0f} s  mean wait {r['mean_wait_s']:6.1f} s  "
              f"AVEbsld {r['mean_bsld']:6.2f}  makespan {r['makespan_s']:6.1f} s  "
              f"unused {r['unused_core_s'] / 3600:7.1f} core-h  kills {r['kills']}  ({r['accounted']} accounted, "
              f"pass {r['pass_s']:.0f} s)")
    if "users" in results and "advisor" in results:
        u, a = results["users"], results["advisor"]
        print(f"advisor vs users: wait {_ratio(a['mean_wait_s'], u['mean_wait_s'])}, "
              f"AVEbsld {_ratio(a['mean_bsld'], u['mean_bsld'])}, makespan {_ratio(a['makespan_s'], u['makespan_s'])}, "
              f"unused core-s {_ratio(a['unused_core_s'], u['unused_core_s'])}")
    print(json.dumps({"bench": "advisor_cluster", "source": source, "jobs": len(replay), "scale": args.scale,
                      "window_s": args.window, "results": results, "cancelled": submitted}))
    return 0


def _our_ids(hook: Any, run_id: str) -> set[str]:
    """Ids of the live jobs whose name carries this run's prefix (one squeue call)."""
    from airflow_provider_hpcai.slurm.commands import check_job_id

    transport = hook.get_conn()
    runner = getattr(transport, "runner", None)
    if runner is None:
        return set()
    out = runner.run(["squeue", "--noheader", "--me", "--format=%i|%j"], timeout=60).stdout
    return {check_job_id(line.split("|")[0]) for line in out.splitlines()
            if "|" in line and line.split("|", 1)[1].startswith(f"hpcai-bcl-{run_id}-")}


def _ratio(new: float | None, old: float | None) -> str:
    if not new or not old:
        return "n/a"
    return f"{100 * (new / old - 1):+.1f} %"


if __name__ == "__main__":
    raise SystemExit(main())
