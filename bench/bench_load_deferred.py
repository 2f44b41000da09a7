"""Load: N concurrently deferred Slurm tasks in one real Airflow (one triggerer), held for minutes.

A real Airflow (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor) runs
one DAG whose task is a ``SlurmJobOperator`` mapped N times (deferrable, local transport).
Every job waits for a release file, so all N tasks stay deferred at once; the benchmark holds
them for ``--minutes``, then releases the jobs (each then sleeps a random 0-20 s) and waits for
every task to finish. It reports:

* tasks lost (not ``success`` at the end: must be 0) and duplicate jobs (a provider tag with
  more than one Slurm job in accounting: must be 0);
* triggerer memory (RSS of the triggerer and its trigger-runner child) sampled over time;
* status RPCs reaching slurmctld per poll interval, against the number of tasks deferred
  (the triggerer runs ``squeue`` as ``nobody`` through a PATH wrapper, so sdiag's per-user
  count holds its RPCs and nothing else): flat in N means one batched query per interval;
* completion-detection latency: trigger saw the job end (trigger log) minus the job's End in
  sacct, and the task resumed on a worker minus End (median, p95).

Usage (root, from the repository root, with the local cluster up)::

    .venv/bin/python bench/bench_load_deferred.py --quick          # 50 tasks, 2-minute hold
    .venv/bin/python bench/bench_load_deferred.py                  # 500 tasks, 10-minute hold

Prints human lines, then one JSON line. Cancels its jobs and stops Airflow on exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX
from airflow_provider_hpcai.spec import make_tag
from bench.bench_controller_load import (
    fit_line,
    load_cluster_env,
    parse_sdiag,
    percentile,
    query_runner,
)
from tests.faults.stack import AirflowStack, rss_bytes

DAG_ID = "hpcai_bench_deferred"
SUBMITTED_MARK = "Submitted Slurm job "


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dag_source(n: int, workdir: str, release: str, interval: float, time_limit_s: int,
               conn_id: str = "slurm_local") -> str:
    """The benchmark DAG: one SlurmJobOperator mapped ``n`` times; jobs wait for ``release``."""
    tails = [f"{random.Random(i).uniform(0, 20):.1f}" for i in range(n)]
    script = f'while [ ! -e {release} ]; do sleep 5; done; sleep "$TAIL"; echo released'
    return f"""
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

with DAG({DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         max_active_tasks={n + 16}, max_active_runs=1):
    SlurmJobOperator.partial(
        task_id="job", slurm_conn_id={conn_id!r}, workdir={workdir!r}, deferrable=True, retries=0,
        poll_interval={interval!r}, script={script!r},
        job_resources=Resources(cpus_per_task=1, memory="16M", time_limit={time_limit_s}, partition="long"),
    ).expand(environment=[{{"TAIL": t}} for t in {tails!r}])
"""


def sdiag_user(user: str) -> tuple[int | None, int]:
    """(sdiag's data-since stamp, RPCs of ``user`` so far)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, timeout=30, check=True).stdout
    parsed = parse_sdiag(out)
    return parsed["since"], parsed["by_user"].get(user, 0)


def task_instances(stack: AirflowStack, run_id: str, tries: int = 5) -> dict[str, dict[str, Any]] | None:
    """The run's task instances, or ``None`` when a starved api-server never answered.

    A busy machine can keep the api-server from answering one query in time; the bench asks again
    (``tries`` times, 10 s apart) instead of ending the run and leaving its tasks behind.
    """
    for attempt in range(1, tries + 1):
        try:
            return stack.task_instances(DAG_ID, run_id)
        except (OSError, RuntimeError) as err:  # URLError, socket timeouts, HTTP 5xx
            log(f"! the api-server did not answer the state query ({attempt}/{tries}): {err}")
            time.sleep(10)
    return None


def states(stack: AirflowStack, run_id: str) -> dict[str, int] | None:
    """Task-instance counts by state (``None``: see :func:`task_instances`)."""
    tis = task_instances(stack, run_id)
    if tis is None:
        return None
    counts: dict[str, int] = {}
    for ti in tis.values():
        counts[str(ti["state"])] = counts.get(str(ti["state"]), 0) + 1
    return counts


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def log_times(folder: pathlib.Path) -> dict[str, float | str | None]:
    """From one mapped task's logs: its job id, when the trigger saw the end, when the task resumed."""
    out: dict[str, float | str | None] = {"job_id": None, "detected": None, "resumed": None}
    worker = folder / "attempt=1.log"
    groups = 0
    for line in (worker.read_text(errors="replace").splitlines() if worker.exists() else []):
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        text = str(event.get("event", ""))
        if text.startswith(SUBMITTED_MARK):
            out["job_id"] = text[len(SUBMITTED_MARK):].split()[0]
        if text == "::group::Pre Execute":
            groups += 1
            if groups == 2:  # the worker run that resumes the task after the trigger fired
                out["resumed"] = _epoch(event["timestamp"])
    for trig in sorted(folder.glob("attempt=1.log.trigger.*")):
        for line in trig.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if str(event.get("event", "")) == "Trigger fired event":
                    out["detected"] = _epoch(event["timestamp"])
    return out


def sacct_records(since: str) -> list[dict[str, str]]:
    fmt = "JobID,State,End,Comment"
    text = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-D", f"--format={fmt}", f"--starttime={since}"],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    return [dict(zip(fmt.split(","), line.split("|", 3))) for line in text.splitlines() if line.count("|") >= 3]


def summarise(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "median_s": round(statistics.median(values), 2) if values else None,
            "p95_s": round(percentile(values, 95), 2) if values else None,
            "max_s": round(max(values), 2) if values else None}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=500, help="concurrently deferred tasks (default 500)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long all of them stay deferred (default 10)")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 tasks held for 2 minutes")
    p.add_argument("--interval", type=float, default=5.0, help="[hpcai] poll_interval, seconds (default 5)")
    p.add_argument("--sample", type=float, default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--ramp-timeout", type=float, default=1800.0, help="bound on getting every task deferred")
    p.add_argument("--conn-id", default="slurm_local", choices=["slurm_local", "slurm_rest", "slurm_ssh"],
                   help="the tasks' Slurm connection (from `scripts/local-slurm env`)")
    p.add_argument("--query-user", default=None,
                   help="the user whose RPCs sdiag counts as status queries (default: slurm_local: the "
                        "triggerer's squeue runs as nobody through a PATH wrapper (root only); REST and "
                        "SSH: hpcai, the connection's user)")
    args = p.parse_args(argv)
    if args.query_user is None:
        args.query_user = ("nobody" if os.getuid() == 0 else "") if args.conn_id == "slurm_local" else "hpcai"
    if args.quick:
        args.tasks, args.minutes = 50, 2.0
    if args.tasks < 1 or args.minutes <= 0 or args.interval <= 0:
        p.error("need --tasks >= 1, --minutes > 0, --interval > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_cluster_env()
    if not shutil.which("sbatch"):
        raise SystemExit("no Slurm cluster: run `bash scripts/local-slurm up`")
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="hpcai-bench-deferred-"))
    scratch.chmod(0o1777)
    workdir, release = scratch / "jobs", scratch / "jobs" / "RELEASE"
    workdir.mkdir(mode=0o1777)
    workdir.chmod(0o1777)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    hold_s = args.minutes * 60
    env = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "SLURM_", "HPCAI_"))}
    env.update(AIRFLOW__HPCAI__POLL_INTERVAL=str(args.interval), AIRFLOW__HPCAI__MAX_POLL_INTERVAL=str(args.interval),
               AIRFLOW__HPCAI__ADVISOR_HOME=str(scratch / "advisor"), AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
               AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(args.tasks + 16))
    stack = AirflowStack(scratch / "home", scratch / "dags", env)
    result: dict[str, Any] = {"bench": "load_deferred", "tasks": args.tasks, "hold_minutes": args.minutes,
                              "poll_interval_s": args.interval, "query_user": args.query_user or None,
                              "conn_id": args.conn_id}
    samples: list[dict[str, Any]] = []
    try:
        stack.migrate()
        stack.dags.mkdir(exist_ok=True)
        time_limit = int(args.ramp_timeout + hold_s + 900)
        (stack.dags / f"{DAG_ID}.py").write_text(dag_source(args.tasks, str(workdir), str(release), args.interval,
                                                            time_limit, args.conn_id))
        for name in ("api-server", "scheduler", "dag-processor"):
            stack.start_component(name)
        # The triggerer alone runs squeue as the query user, so sdiag's per-user count is its status RPCs.
        wrap_env = {}
        if args.query_user and args.conn_id == "slurm_local":
            wrap = query_runner(args.query_user, scratch).path_prefix
            wrap_env = {"PATH": f"{wrap}:{os.environ['PATH']}"}
        stack.start_component("triggerer", extra_env=wrap_env)
        stack.wait_healthy()
        stack.wait_dag(DAG_ID, timeout=300)
        t0 = time.time()
        run_id = stack.trigger(DAG_ID)
        log(f"triggered {args.tasks} mapped tasks; waiting until all are deferred")
        phase, hold_end = "ramp", None
        prev = (time.time(), *sdiag_user(args.query_user or "root"))
        while True:
            time.sleep(args.sample)
            now = time.time()
            counts = states(stack, run_id)
            if counts is None:
                continue  # no sample this time; the RPC rate is taken over the longer interval next time
            since_stamp, rpcs = sdiag_user(args.query_user or "root")
            reset = since_stamp != prev[1]
            deferred = counts.get("deferred", 0)
            sample = {"t": round(now - t0), "phase": phase, "deferred": deferred, "states": counts,
                      "triggerer_rss_mib": round(rss_bytes(stack.pids("triggerer")) / 2**20, 1),
                      "rpcs_per_interval": None if reset else round((rpcs - prev[2]) * args.interval / (now - prev[0]), 2)}
            samples.append(sample)
            prev = (now, since_stamp, rpcs)
            log(f"{phase:7s} t={sample['t']:5d}s deferred={deferred:4d} states={counts} "
                f"triggerer RSS {sample['triggerer_rss_mib']} MiB, status RPCs/interval {sample['rpcs_per_interval']}")
            if phase == "ramp" and deferred >= args.tasks:
                phase, hold_end = "hold", now + hold_s
                result["ramp_s"] = round(now - t0)
                log(f"all {args.tasks} deferred after {result['ramp_s']} s; holding {args.minutes:g} min")
            elif phase == "ramp" and now - t0 > args.ramp_timeout:
                log(f"! only {deferred} of {args.tasks} deferred after {args.ramp_timeout:.0f} s: holding anyway")
                phase, hold_end = "hold", now + hold_s
                result["ramp_s"] = None
            elif phase == "hold" and now >= (hold_end or 0):
                release.touch()
                phase, released_at = "drain", now
                log("released the jobs; waiting for every task to finish")
            elif phase == "drain" and sum(counts.get(s, 0) for s in ("success", "failed", "upstream_failed",
                                                                     "skipped")) >= args.tasks:
                result["drain_s"] = round(now - released_at)
                break
            elif phase == "drain" and now - released_at > 1800:
                log("! tasks still unfinished 30 min after the release")
                break
        final = states(stack, run_id) or {}
        tis = task_instances(stack, run_id) or {}
        lost = [k for k, ti in tis.items() if ti["state"] != "success"] + ["<missing>"] * (args.tasks - len(tis))
        mine = {f"{COMMENT_PREFIX}{make_tag(DAG_ID, 'job', run_id, i)}" for i in range(args.tasks)}
        records = [r for r in sacct_records(since) if r["Comment"] in mine]  # other users' jobs are not ours
        by_tag: dict[str, list[dict[str, str]]] = {}
        for rec in records:
            by_tag.setdefault(rec["Comment"], []).append(rec)
        duplicates = {tag: [r["JobID"] for r in recs] for tag, recs in by_tag.items() if len(recs) > 1}
        ends = {r["JobID"]: r["End"] for r in records}
        detect, resume = [], []
        folder = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=job"
        for sub in sorted(folder.glob("map_index=*")):
            times = log_times(sub)
            end = ends.get(str(times["job_id"]))
            if not end or not end[:4].isdigit():
                continue
            end_epoch = time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S"))
            if times["detected"]:
                detect.append(float(times["detected"]) - end_epoch)
            if times["resumed"]:
                resume.append(float(times["resumed"]) - end_epoch)
        hold = [s for s in samples if s["phase"] == "hold"]
        rss_hold = [s["triggerer_rss_mib"] for s in hold]
        rpcs_ok = [s for s in samples if s["rpcs_per_interval"] is not None and s["phase"] in ("ramp", "hold")]
        # Only the local CLI isolates the triggerer's queries (a user of their own); over REST and SSH the
        # workers' submissions during the ramp count too, so only the hold (N constant) is meaningful.
        line = fit_line([s["deferred"] for s in rpcs_ok], [s["rpcs_per_interval"] for s in rpcs_ok]) \
            if args.conn_id == "slurm_local" else None
        result.update(
            final_states=final,
            tasks_lost=len(lost),
            lost=lost[:20],
            jobs_in_accounting=len(records),
            tags=len(by_tag),
            tasks_without_a_job=args.tasks - len(by_tag),
            duplicate_jobs=sum(len(v) - 1 for v in duplicates.values()),
            duplicates=dict(list(duplicates.items())[:10]),
            triggerer_rss_mib={"hold_first": rss_hold[0] if rss_hold else None,
                               "hold_last": rss_hold[-1] if rss_hold else None,
                               "hold_max": max(rss_hold) if rss_hold else None,
                               "overall_max": max(s["triggerer_rss_mib"] for s in samples)},
            status_rpcs_per_interval={
                "hold_median": statistics.median([s["rpcs_per_interval"] for s in hold
                                                  if s["rpcs_per_interval"] is not None] or [0]),
                "fit_vs_deferred": {"intercept": round(line[0], 2), "per_deferred_task": round(line[1], 4)}
                if line else None},
            detection_latency=summarise(detect),
            resume_latency=summarise(resume),
            samples=samples,
        )
        log(f"tasks lost: {result['tasks_lost']} (final states {final}); duplicate jobs: {result['duplicate_jobs']} "
            f"({len(records)} jobs for {len(by_tag)} tags)")
        log(f"triggerer RSS during the hold: {result['triggerer_rss_mib']}")
        log(f"status RPCs per {args.interval:g} s interval while held: {result['status_rpcs_per_interval']}")
        log(f"completion detected (trigger fired - sacct End, 1 s resolution): {result['detection_latency']}")
        log(f"task resumed on a worker - sacct End: {result['resume_latency']}")
    finally:
        release.touch()
        stack.stop()
        # Only this benchmark's jobs (the operator names them <dag_id>.<task_id>).
        subprocess.run(["scancel", f"--name={DAG_ID}.job"], capture_output=True, timeout=120, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result.get("tasks_lost") == 0 and result.get("duplicate_jobs") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
