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
    .venv/bin/python bench/bench_advisor_cluster.py [--quick] [--jobs 200] [--scale 30]
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

        rows = [{"submit": float(r.submit_time), "run": float(r.run_time), "request": float(r.requested_time),
                 "procs": int(r.processors), "user": f"u{r.user_id}"}
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
            rows.append({"submit": t, "run": max(run, 1.0), "request": math.ceil(max(run, typical * over) / 60) * 60,
                         "procs": rng.choice([1, 2, 4, 8, 16, 32]), "user": f"u{u}"})
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
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 jobs, scale 1/60, 10 s window")
    parser.add_argument("--jobs", type=int, default=200, help="jobs replayed per pass")
    parser.add_argument("--history", type=int, default=2000, help="earlier trace jobs the advisor trains on")
    parser.add_argument("--scale", type=float, default=30.0, help="trace seconds per replay second")
    parser.add_argument("--window", type=float, default=90.0, help="seconds over which jobs arrive")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds allowed per pass (safety stop)")
    parser.add_argument("--conn", default=None, help="Slurm connection id (default: the CLI on this host)")
    parser.add_argument("--parse-cost", action="store_true",
                        help="only measure the import and DagBag-parse cost of the operators and policy")
    args = parser.parse_args(argv)
    if args.parse_cost:
        cost = parse_cost()
        off, enforce = cost["dagbag_50_tasks_off"], cost["dagbag_50_tasks_enforce"]
        print(f"import airflow_provider_hpcai.operators.slurm after airflow.sdk: "
              f"{1000 * cost['import_operators_after_airflow_sdk_s']:.1f} ms; all provider modules (policy "
              f"included): {1000 * cost['provider_modules_self_s']:.1f} ms (medians of 5); heavy modules "
              f"imported: {cost['heavy_modules_imported'] or 'none'}")
        for mode in ("off", "advise", "enforce"):
            r = cost[f"dagbag_50_tasks_{mode}"]
            print(f"DagBag parse, 50 SlurmJobOperator tasks, advisor_mode={mode}: {1000 * r['median_s']:.1f} ms "
                  f"median (first {1000 * r['first_s']:.0f} ms), {r['changed']} tasks changed")
        print(f"policy share (enforce - off): {1000 * (enforce['median_s'] - off['median_s']):.2f} ms per file, "
              f"{1e6 * (enforce['median_s'] - off['median_s']) / 50:.0f} us per task")
        print(json.dumps({"bench": "advisor_parse_cost", **cost}))
        return 0
    if args.quick:
        args.jobs, args.scale, args.window, args.budget = 30, 60.0, 10.0, 200.0
    import logging

    import structlog

    from airflow_provider_hpcai.hooks.slurm import SlurmHook, build_transport

    # Airflow logs through structlog: keep warnings, drop the hook's line per submission.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

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


PARSE_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

with DAG("hpcai_parse_bench", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for i in range(50):
        SlurmJobOperator(task_id=f"t{i:02d}", script="echo hi",
                         job_resources=Resources(ntasks=4, time_limit=3600, memory="8G"))
"""

PARSE_PROBE = """
import json, statistics, sys, time
from airflow.dag_processing.dagbag import DagBag
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    times.append(time.perf_counter() - start)
dag = bag.dags["hpcai_parse_bench"]
changed = sum(1 for t in dag.tasks if (getattr(t, "hpcai_decision", None) or {}).get("applied")
              != (getattr(t, "hpcai_decision", None) or {}).get("requested"))
print(json.dumps({"median_s": statistics.median(times[1:]), "first_s": times[0], "changed": changed,
                  "errors": len(bag.import_errors)}))
"""


def parse_cost(repeats: int = 9) -> dict[str, Any]:
    """Import cost of the operators and the policy's share of a 50-task DagBag parse (no cluster needed)."""
    import re
    import subprocess

    from airflow_provider_hpcai.advisor.cache import write_champion
    from airflow_provider_hpcai.advisor.history import JobRecord
    from airflow_provider_hpcai.advisor.online import train_compact
    from airflow_provider_hpcai.advisor.pipeline import TRAINING_SPECS

    out: dict[str, Any] = {}
    imports = []
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                               "import airflow.sdk; import airflow_provider_hpcai.operators.slurm"],
                              capture_output=True, text=True, check=True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
        parsed = [m for m in (re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(.*)$", ln) for ln in lines) if m]
        cumulative = {m.group(3).strip(): int(m.group(2)) for m in parsed}
        # Self time of every provider module, wherever it loads (Airflow loads the policy itself).
        own = sum(int(m.group(1)) for m in parsed if m.group(3).strip().startswith("airflow_provider_hpcai"))
        imports.append((cumulative.get("airflow_provider_hpcai.operators.slurm", 0) / 1e6, own / 1e6))
        heavy = sorted({name.strip().split(".")[0] for name in cumulative}
                       & {"numpy", "mlflow", "statsmodels", "matplotlib", "numba", "mpi4py", "kubernetes", "dask"})
    out["import_operators_after_airflow_sdk_s"] = sorted(i[0] for i in imports)[len(imports) // 2]
    out["provider_modules_self_s"] = sorted(i[1] for i in imports)[len(imports) // 2]
    out["heavy_modules_imported"] = heavy
    with tempfile.TemporaryDirectory() as tmp:
        dags = os.path.join(tmp, "dags")
        os.makedirs(dags)
        with open(os.path.join(dags, "fifty.py"), "w", encoding="utf-8") as handle:
            handle.write(PARSE_DAG)
        rng = random.Random(1)
        records = [JobRecord(job_id=f"{t}-{k}", submit_time=1.7e9 + 600 * (k * 50 + t), state="COMPLETED",
                             elapsed_seconds=300 * (1 + t % 5) * rng.lognormvariate(0, 0.1), requested_seconds=3600,
                             max_rss_bytes=1e9 * (1 + t % 3) * rng.lognormvariate(0, 0.05),
                             requested_memory_bytes=8 * 1024.0**3, cpus=4, dag_id="hpcai_parse_bench",
                             task_id=f"t{t:02d}", source="bench")
                   for k in range(12) for t in range(50)]
        model, _ = train_compact(records, TRAINING_SPECS, version="bench")
        write_champion(os.path.join(tmp, "home"), model)
        for mode in ("off", "advise", "enforce"):
            env = dict(os.environ, AIRFLOW_HOME=os.path.join(tmp, "af"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                       AIRFLOW__HPCAI__ADVISOR_MODE=mode, AIRFLOW__HPCAI__ADVISOR_HOME=os.path.join(tmp, "home"),
                       PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            proc = subprocess.run([sys.executable, "-c", PARSE_PROBE, dags, str(repeats)], capture_output=True,
                                  text=True, env=env, check=True)
            out[f"dagbag_50_tasks_{mode}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _ratio(new: float | None, old: float | None) -> str:
    if not new or not old:
        return "n/a"
    return f"{100 * (new / old - 1):+.1f} %"


if __name__ == "__main__":
    raise SystemExit(main())
