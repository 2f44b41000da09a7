"""Controller load: the batched status poller against per-job polling, on a real Slurm cluster.

Three measurements, all through the provider's own code (``SlurmHook``, ``AsyncSlurmHook``,
``StatusPoller``, ``JobSpec``, ``Resources``) against the local cluster of ``scripts/local-slurm``:

1. N tiny ``sleep`` jobs are waited for twice, each time in one asyncio event loop: (a) N
   waiters sharing one :class:`StatusPoller`; (b) N coroutines each calling
   ``SlurmHook.get_status(job_id)`` every interval (what the existing Airflow Slurm operators
   do). ``sdiag`` is read before and after each phase: status RPCs reaching slurmctld per
   poll interval, and their ratio.
2. Completion-detection latency of the batched waiters: (waiter resolved) - (job ``End`` from
   sacct, whole seconds).
3. Submission throughput through the hook with each transport (local CLI, REST, SSH) against a
   plain ``sbatch`` loop, in interleaved rounds (ratio of median seconds per submission).

When run as root, the status queries of phases 1a/1b run ``squeue`` as ``nobody`` (a wrapper put
first on the PATH through ``LocalRunner(path_prefix=...)``), so sdiag's per-user counts hold
this benchmark's RPCs and nothing else, even while other clients use the same controller.

Usage (from the repository root; the environment comes from the local-cluster scripts)::

    eval "$(bash scripts/local-slurm env)"; eval "$(bash scripts/local-sshd env)"
    .venv/bin/python bench/bench_controller_load.py            # N=200, 5 s interval
    .venv/bin/python bench/bench_controller_load.py --quick    # N=50 smoke run

Prints human-readable lines, then one JSON line. Every job it submits is cancelled on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import pathlib
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The hook logs every submission at INFO: 500 such lines would bury the figures.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, LocalRunner
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec
from airflow_provider_hpcai.triggers.poller import StatusPoller

#: Message types a job status query costs on slurmctld (squeue asks for job info, plus the
#: federation or partition info it needs to print; slurmrestd's /jobs is REQUEST_JOB_INFO).
JOB_INFO_TYPES = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE")
STATUS_TYPES = JOB_INFO_TYPES + ("REQUEST_FED_INFO", "REQUEST_PARTITION_INFO")
#: sdiag is sampled every this many poll intervals during a phase (one interval aliases badly).
SAMPLE_INTERVALS = 2
TRANSPORT_CONNS = {"local": "slurm_local", "rest": "slurm_rest", "ssh": "slurm_ssh"}
_SUBMITTED: set[str] = set()

_SDIAG_LINE = re.compile(r"^\s*(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)\s+ave_time:\d+\s+total_time:(\d+)")


# ---------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, flush=True)


def parse_sdiag(text: str) -> dict[str, Any]:
    """RPC counts from ``sdiag`` output: ``{"since": epoch, "by_type", "by_user", "user_time_us"}``.

    ``user_time_us`` is the controller time (microseconds) spent on each user's RPCs.
    """
    since = re.search(r"^Data since.*\((\d+)\)", text, re.MULTILINE)
    out: dict[str, Any] = {"since": int(since.group(1)) if since else None, "by_type": {}, "by_user": {},
                           "user_time_us": {}}
    section = None
    for line in text.splitlines():
        if "statistics by message type" in line:
            section = "by_type"
        elif "statistics by user" in line:
            section = "by_user"
        elif line.startswith("Pending RPC"):
            section = None
        elif section and (m := _SDIAG_LINE.match(line)):
            out[section][m.group(1)] = int(m.group(3))
            if section == "by_user":
                out["user_time_us"][m.group(1)] = int(m.group(4))
    return out


def sdiag() -> dict[str, Any]:
    proc = subprocess.run(["sdiag"], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sdiag failed ({proc.returncode}): {proc.stderr.strip()}; is slurmctld up?")
    return parse_sdiag(proc.stdout)


def sdiag_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counter differences; ``reset`` is true when slurmctld restarted in between (counts invalid)."""
    def diff(key: str) -> dict[str, int]:
        names = set(before[key]) | set(after[key])
        return {n: after[key].get(n, 0) - before[key].get(n, 0) for n in sorted(names)}

    return {"reset": before["since"] != after["since"], "by_type": diff("by_type"), "by_user": diff("by_user"),
            "user_time_us": diff("user_time_us")}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load_cluster_env() -> None:
    """Export what ``scripts/local-slurm env`` / ``local-sshd env`` print, unless already set."""
    for script, marker in (("local-slurm", "AIRFLOW_CONN_SLURM_LOCAL"), ("local-sshd", "AIRFLOW_CONN_SSH_HPCAI")):
        path = ROOT / "scripts" / script
        if os.environ.get(marker) or not path.exists():
            continue
        proc = subprocess.run(["bash", str(path), "env"], capture_output=True, text=True, timeout=60, check=False)
        for line in proc.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export "):].partition("=")
                os.environ.setdefault(key, shlex.split(value)[0] if value else "")


def scancel_all() -> None:
    """Cancel every job this run submitted (finished ones are ignored by scancel)."""
    ids = sorted(_SUBMITTED, key=int)
    for i in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[i : i + 500]], capture_output=True, timeout=60, check=False)
    _SUBMITTED.difference_update(ids)


def query_runner(query_user: str | None, scratch: pathlib.Path) -> LocalRunner:
    """A LocalRunner whose ``squeue`` runs as ``query_user`` (so sdiag can attribute its RPCs)."""
    if not query_user:
        return LocalRunner()
    import pwd

    entry = pwd.getpwnam(query_user)
    squeue = shutil.which("squeue")
    if squeue is None:
        raise SystemExit("squeue is not installed: start the cluster with `bash scripts/local-slurm up`")
    wrap = scratch / "as-user-bin"
    wrap.mkdir(exist_ok=True)
    (wrap / "squeue").write_text(
        f"#!/bin/sh\nexec setpriv --reuid={entry.pw_uid} --regid={entry.pw_gid} --clear-groups -- {shlex.quote(squeue)} \"$@\"\n"
    )
    (wrap / "squeue").chmod(0o755)
    return LocalRunner(path_prefix=str(wrap))


# ---------------------------------------------------------------------------------- phase 1
def submit_sleep_jobs(hook: SlurmHook, n: int, lo: int, hi: int, workdir: str, label: str) -> dict[str, float]:
    """Submit ``n`` jobs sleeping ``lo``..``hi`` s (evenly spread, shuffled); ``{job_id: seconds}``.

    Durations carry tenths of a second so that job ends do not all fall at the same phase of
    the poll interval (whole seconds with a 5 s interval would bias the latency figures).
    """
    durations = [round(lo + (hi - lo) * i / max(n - 1, 1) + 0.1 * (i % 10), 1) for i in range(n)]
    random.Random(n).shuffle(durations)
    resources = Resources(cpus_per_task=1, memory="16M", time_limit=max(hi * 3, 300))
    jobs: dict[str, float] = {}
    for i, seconds in enumerate(durations):
        spec = JobSpec(name=f"bench-load-{label}-{i}", script=f"sleep {seconds}", resources=resources)
        job_id = hook.submit(spec, workdir=workdir)
        _SUBMITTED.add(job_id)
        jobs[job_id] = seconds
    return jobs


async def wait_batched(hook: SlurmHook, job_ids: list[str], interval: float,
                       resolved: dict[str, tuple[float, str]], stats: dict[str, int]) -> None:
    """N waiters on one StatusPoller; fills ``resolved`` (wall clock, state) and ``stats["queries"]``."""
    poller = StatusPoller("bench", AsyncSlurmHook(hook.slurm_conn_id, hook=hook).get_statuses,
                          interval=interval, max_interval=interval)

    async def one(job_id: str) -> None:
        status = await poller.wait(job_id)
        resolved[job_id] = (time.time(), status.state)

    try:
        await asyncio.gather(*(one(j) for j in job_ids))
    finally:
        stats["queries"] = poller.queries


async def wait_per_job(hook: SlurmHook, job_ids: list[str], interval: float,
                       resolved: dict[str, tuple[float, str]], stats: dict[str, int]) -> None:
    """N coroutines, each polling its own job with ``hook.get_status`` every ``interval``."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="per-job")
    stats["queries"] = 0

    async def one(job_id: str, offset: float) -> None:
        await asyncio.sleep(offset)  # independent tasks do not poll in lockstep
        while True:
            stats["queries"] += 1
            status = await loop.run_in_executor(pool, hook.get_status, job_id)
            if status is not None and status.phase is not Phase.ACTIVE:
                resolved[job_id] = (time.time(), status.state)
                return
            await asyncio.sleep(interval)

    try:
        await asyncio.gather(*(one(j, interval * i / len(job_ids)) for i, j in enumerate(job_ids)))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _user_rpcs(delta: dict[str, Any], rpc_user: str) -> int:
    count = delta["by_user"].get(rpc_user, 0)
    if rpc_user == _whoami():  # our own sdiag reads land in our user's count too
        count -= delta["by_type"].get("REQUEST_STATS_INFO", 0)
    return count


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares ``y = a + b x``; ``None`` without spread in ``x``."""
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var
    return my - b * mx, b


async def measure_phase(waiter: Callable[..., Any], hook: SlurmHook, job_ids: list[str], interval: float,
                        timeout: float, rpc_user: str) -> dict[str, Any]:
    """Run ``waiter``, reading sdiag every ``SAMPLE_INTERVALS`` intervals: RPCs per window against jobs waiting."""
    resolved: dict[str, tuple[float, str]] = {}
    samples: list[dict[str, float]] = []
    first = prev = await asyncio.to_thread(sdiag)
    start = prev_t = time.time()
    prev_waiting = len(job_ids)
    stats: dict[str, int] = {"queries": 0}
    task = asyncio.ensure_future(waiter(hook, job_ids, interval, resolved, stats))
    deadline = start + timeout
    while not task.done() and time.time() < deadline:
        await asyncio.wait({task}, timeout=SAMPLE_INTERVALS * interval)
        now, snap = time.time(), await asyncio.to_thread(sdiag)
        waiting = len(job_ids) - len(resolved)
        delta = sdiag_delta(prev, snap)
        if not delta["reset"]:
            samples.append({"t": round(now - start, 1), "waiting": (prev_waiting + waiting) / 2,
                            "rpcs_per_interval": _user_rpcs(delta, rpc_user) * interval / (now - prev_t)})
        prev, prev_t, prev_waiting = snap, now, waiting
    if not task.done():
        log(f"  ! phase hit its {timeout:.0f} s bound with {len(job_ids) - len(resolved)} jobs unresolved")
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    wall = time.time() - start
    total = sdiag_delta(first, prev)
    return {"resolved": resolved, "samples": samples, "wall": wall, "total": total,
            "client_queries": stats["queries"], "start": start}


def run_wait_phase(name: str, waiter: Callable[..., Any], query_hook: SlurmHook, jobs: dict[str, float],
                   interval: float, timeout: float, rpc_user: str) -> dict[str, Any]:
    """One waiting phase; RPC counts normalised per poll interval, and against the jobs waiting."""
    job_ids = sorted(jobs, key=int)
    m = asyncio.run(measure_phase(waiter, query_hook, job_ids, interval, timeout, rpc_user))
    resolved, wall, delta = m["resolved"], m["wall"], m["total"]
    intervals = wall / interval
    # How many jobs were waited on, on average: per-job polling costs about this many queries per interval.
    mean_waiting = sum(t - m["start"] for t, _ in resolved.values()) / wall + (len(job_ids) - len(resolved))
    by_type = delta["by_type"]
    user_rpcs = _user_rpcs(delta, rpc_user)
    job_info = sum(by_type.get(t, 0) for t in JOB_INFO_TYPES)
    line = fit_line([s["waiting"] for s in m["samples"]], [s["rpcs_per_interval"] for s in m["samples"]])
    full = [s["rpcs_per_interval"] for s in m["samples"] if s["waiting"] >= 0.9 * len(job_ids)]
    out = {
        "phase": name,
        "jobs": len(job_ids),
        "resolved": len(resolved),
        "states": {s: sum(1 for _, st in resolved.values() if st == s) for s in sorted({st for _, st in resolved.values()})},
        "wall_s": round(wall, 1),
        "intervals": round(intervals, 1),
        "mean_jobs_waiting": round(mean_waiting, 1),
        "client_queries": m["client_queries"],
        "client_queries_per_interval": round(m["client_queries"] / intervals, 2),
        "rpc_user": rpc_user,
        "user_rpcs": user_rpcs,
        "user_rpcs_per_interval": round(user_rpcs / intervals, 2),
        "user_rpcs_per_interval_all_waiting": round(statistics.fmean(full), 2) if full else None,
        # Controller time on these RPCs (a batched query returns every job, so each costs more).
        "user_rpc_ms_per_interval": round(delta["user_time_us"].get(rpc_user, 0) / 1000 / intervals, 2),
        "rpcs_per_interval_fit": {"intercept": round(line[0], 2), "per_waiting_job": round(line[1], 3),
                                  f"at_{len(job_ids)}_waiting": round(line[0] + line[1] * len(job_ids), 1)}
        if line else None,
        "samples": [{"t": s["t"], "waiting": s["waiting"], "rpcs": round(s["rpcs_per_interval"], 1)} for s in m["samples"]],
        "job_info_rpcs_all_users": job_info,
        "status_rpcs_by_type_all_users": {t: by_type.get(t, 0) for t in STATUS_TYPES},
        "sdiag_reset": delta["reset"],
        "_resolved": resolved,
    }
    fit = out["rpcs_per_interval_fit"]
    log(f"  {name}: {len(resolved)}/{len(job_ids)} resolved {out['states']} in {wall:.0f} s "
        f"({intervals:.1f} intervals, {mean_waiting:.0f} jobs waiting on average)")
    log(f"  {name}: {user_rpcs} RPCs from user {rpc_user} = {out['user_rpcs_per_interval']} per interval "
        f"(while all {len(job_ids)} waited: {out['user_rpcs_per_interval_all_waiting']}; fit "
        f"{fit['intercept'] if fit else '-'} + {fit['per_waiting_job'] if fit else '-'} x waiting); "
        f"client queries {m['client_queries']}; controller time {out['user_rpc_ms_per_interval']} ms per interval"
        + ("  [slurmctld restarted during the phase: totals invalid]" if delta["reset"] else ""))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a is not None and b else None


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _epoch(text: str | None) -> float | None:
    if text and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", text):
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    return None


def job_times(hook: SlurmHook, job_ids: list[str], wait_s: float = 90) -> dict[str, dict[str, float]]:
    """``{job_id: {"submit", "start", "end"}}`` (epoch, whole seconds) from sacct, once it has every End."""
    deadline = time.time() + wait_s
    times: dict[str, dict[str, float]] = {}
    while True:
        for job_id, rec in hook.get_conn().accounting([j for j in job_ids if j not in times]).items():
            stamps = {k: _epoch(rec.get(k)) for k in ("submit", "start", "end")}
            if all(v is not None for v in stamps.values()):
                times[job_id] = stamps  # type: ignore[assignment]
        if len(times) == len(job_ids) or time.time() > deadline:
            return times
        time.sleep(3)


def latency_stats(resolved: dict[str, tuple[float, str]], ends: dict[str, float]) -> dict[str, Any]:
    """Waiter resolved minus job End; jobs the poller gave up on as UNKNOWN are left out."""
    lat = [resolved[j][0] - ends[j] for j in resolved if j in ends and resolved[j][1] != "UNKNOWN"]
    return {
        "n": len(lat),
        "median_s": round(statistics.median(lat), 2) if lat else None,
        "p95_s": round(percentile(lat, 95), 2) if lat else None,
        "max_s": round(max(lat), 2) if lat else None,
    }


# ---------------------------------------------------------------------------------- phase 3
def submission_throughput(count: int, rounds: int, transports: list[str], workdir: str) -> dict[str, Any]:
    """Jobs/s of a plain sbatch loop and of ``SlurmHook.submit`` per transport, interleaved rounds."""
    spec = JobSpec(name="bench-submit", script="true", resources=Resources(cpus_per_task=1, memory="16M", time_limit=60))
    plain_argv = ["sbatch", "--parsable", "--job-name=bench-submit-plain", f"--chdir={workdir}",
                  f"--output={workdir}/plain-%j.out", "--ntasks=1", "--cpus-per-task=1", "--mem=16M",
                  "--time=1", "--wrap=true"]

    def plain() -> str:
        proc = subprocess.run(plain_argv, capture_output=True, text=True, timeout=60, check=True)
        return proc.stdout.strip().split(";")[0]

    methods: dict[str, Callable[[], str]] = {"sbatch_loop": plain}
    skipped: dict[str, str] = {}
    for name in transports:
        hook = SlurmHook(TRANSPORT_CONNS[name])
        try:
            _SUBMITTED.add(hook.submit(spec, workdir=workdir))  # warm-up: connection, API version, mkdir
        except Exception as err:  # an unavailable transport is reported, not fatal
            skipped[name] = f"{type(err).__name__}: {err}"
            log(f"  ! {name}: skipped ({skipped[name]})")
            continue
        methods[f"hook_{name}"] = (lambda h=hook: h.submit(spec, workdir=workdir))
    _SUBMITTED.add(plain())
    per_round = max(1, count // rounds)
    each: dict[str, list[float]] = {m: [] for m in methods}
    order = list(methods)
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            for _ in range(per_round):
                t0 = time.perf_counter()
                _SUBMITTED.add(methods[name]())
                each[name].append(time.perf_counter() - t0)
        if len(_SUBMITTED) > 200:
            scancel_all()  # `true` jobs end at once; this keeps the queue short
    # Headline: 1 / median seconds per submission (robust to the other load on a shared 2-core box).
    base = 1 / statistics.median(each["sbatch_loop"])
    out: dict[str, Any] = {"per_method": {}, "skipped": skipped, "submissions_each": per_round * rounds,
                           "rounds": rounds}
    for name in methods:
        rate = 1 / statistics.median(each[name])
        out["per_method"][name] = {
            "jobs_per_s": round(rate, 2),
            "ms_per_job_median": round(1000 * statistics.median(each[name]), 1),
            "ms_per_job_p95": round(1000 * (percentile(each[name], 95) or 0), 1),
            "jobs_per_s_whole_loop": round(len(each[name]) / sum(each[name]), 2),
            "ratio_to_sbatch_loop": round(rate / base, 3),
        }
        log(f"  {name:12s} {rate:7.1f} jobs/s ({1000 / rate:6.1f} ms median per job, {per_round * rounds} jobs; "
            f"p95 {out['per_method'][name]['ms_per_job_p95']:.1f} ms)  ratio to sbatch loop {rate / base:.2f}")
    return out


# ---------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs waited on in each polling phase (default 200)")
    p.add_argument("--interval", type=float, default=5.0, help="poll interval in seconds, both ways (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 jobs, 20 submissions per method")
    p.add_argument("--min-sleep", type=int, default=20, help="shortest job, seconds (default 20)")
    p.add_argument("--max-sleep", type=int, default=60, help="longest job, seconds (default 60)")
    p.add_argument("--submissions", type=int, default=50, help="timed submissions per method (default 50)")
    p.add_argument("--rounds", type=int, default=0,
                   help="interleaved rounds the submissions are split into (default: one submission per method "
                        "per round, so neighbouring samples share the machine's background load)")
    p.add_argument("--transports", default="local,rest,ssh", help="hook transports to time (default local,rest,ssh)")
    p.add_argument("--query-user", default="nobody" if os.getuid() == 0 else "",
                   help="run the phase-1 squeue calls as this user so sdiag attributes them (root only; '' = off)")
    p.add_argument("--skip-polling", action="store_true", help="only the submission measurement")
    p.add_argument("--skip-submit", action="store_true", help="only the polling measurements")
    p.add_argument("--time-limit", type=int, default=1500, help="hard bound on the whole run, seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.submissions = 50, 20
    args.rounds = args.rounds or args.submissions
    if args.jobs < 1 or args.interval <= 0 or args.min_sleep < 1 or args.max_sleep < args.min_sleep:
        p.error("need --jobs >= 1, --interval > 0 and 1 <= --min-sleep <= --max-sleep")
    unknown = set(filter(None, args.transports.split(","))) - set(TRANSPORT_CONNS)
    if unknown:
        p.error(f"unknown transports {sorted(unknown)}: choose from {sorted(TRANSPORT_CONNS)}")
    return args


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise TimeoutError("the benchmark ran past --time-limit")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_cluster_env()
    if not shutil.which("sbatch") or not os.environ.get("SLURM_CONF"):
        raise SystemExit("no Slurm cluster: run `bash scripts/local-slurm up` and `eval \"$(bash scripts/local-slurm env)\"`")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cleans up even if started with SIGINT ignored
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.time_limit)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="hpcai-bench-load-"))
    scratch.chmod(0o1777)  # REST and SSH jobs run as the cluster user and write their output here
    workdir = str(scratch / "jobs")
    os.makedirs(workdir, mode=0o1777)
    os.chmod(workdir, 0o1777)
    result: dict[str, Any] = {"bench": "controller_load", "jobs": args.jobs, "interval_s": args.interval,
                              "sleep_s": [args.min_sleep, args.max_sleep]}
    try:
        if not args.skip_polling:
            submit_hook = SlurmHook("slurm_local")
            query_hook = SlurmHook("slurm_local", transport=CliTransport(query_runner(args.query_user, scratch)))
            rpc_user = args.query_user or _whoami()
            bound = args.max_sleep + 10 * args.interval + 180
            phases: dict[str, Any] = {}
            for name, waiter in (("batched", wait_batched), ("per_job", wait_per_job)):
                log(f"[1{'ab'[len(phases)]}] {name}: submitting {args.jobs} sleep jobs "
                    f"({args.min_sleep}-{args.max_sleep} s) through the local hook")
                t0 = time.time()
                jobs = submit_sleep_jobs(submit_hook, args.jobs, args.min_sleep, args.max_sleep, workdir, name)
                log(f"  submitted in {time.time() - t0:.1f} s; waiting, interval {args.interval:g} s")
                phases[name] = run_wait_phase(name, waiter, query_hook, jobs, args.interval, bound, rpc_user)
                phases[name]["_ids"] = list(jobs)
            log("[2] completion-detection latency (waiter resolved - sacct End, End has 1 s resolution)")
            for name, phase in phases.items():
                times = job_times(submit_hook, phase.pop("_ids"))
                phase["latency"] = latency_stats(phase.pop("_resolved"), {j: t["end"] for j, t in times.items()})
                lat = phase["latency"]
                # Side figure: how long jobs queued while this phase's polling loaded the 2-core box.
                waits = [t["start"] - t["submit"] for t in times.values()]
                phase["queue_wait_s"] = {"median": statistics.median(waits), "max": max(waits)} if waits else None
                log(f"  {name}: median {lat['median_s']} s, p95 {lat['p95_s']} s, max {lat['max_s']} s "
                    f"over {lat['n']} jobs (interval {args.interval:g} s); job start - submit: "
                    f"median {phase['queue_wait_s']['median'] if waits else '-'} s, max {max(waits) if waits else '-'} s")
            b, p = phases["batched"], phases["per_job"]
            key_n = f"at_{args.jobs}_waiting"
            fit_b, fit_p = (b["rpcs_per_interval_fit"] or {}).get(key_n), (p["rpcs_per_interval_fit"] or {}).get(key_n)
            result["polling"] = phases
            result["rpc_ratio_per_job_over_batched"] = {
                "whole_phase": _ratio(p["user_rpcs_per_interval"], b["user_rpcs_per_interval"]),
                "all_waiting": _ratio(p["user_rpcs_per_interval_all_waiting"], b["user_rpcs_per_interval_all_waiting"]),
                "fit_at_n": _ratio(fit_p, fit_b),
                "controller_time_whole_phase": _ratio(p["user_rpc_ms_per_interval"], b["user_rpc_ms_per_interval"]),
            }
            r = result["rpc_ratio_per_job_over_batched"]
            log(f"[1] status RPCs per {args.interval:g} s interval (user {rpc_user}): batched "
                f"{b['user_rpcs_per_interval']} (poller queries {b['client_queries']}), per-job "
                f"{p['user_rpcs_per_interval']} -> ratio {r['whole_phase']}x over the phase; with all {args.jobs} "
                f"waiting {b['user_rpcs_per_interval_all_waiting']} vs {p['user_rpcs_per_interval_all_waiting']} "
                f"({r['all_waiting']}x); fitted at N={args.jobs}: {fit_b} vs {fit_p} ({r['fit_at_n']}x); controller "
                f"time {b['user_rpc_ms_per_interval']} vs {p['user_rpc_ms_per_interval']} ms per interval "
                f"({r['controller_time_whole_phase']}x)")
            scancel_all()
        if not args.skip_submit:
            transports = [t for t in args.transports.split(",") if t]
            log(f"[3] submission throughput: {args.submissions} submissions per method in {args.rounds} rounds")
            result["submission"] = submission_throughput(args.submissions, args.rounds, transports, workdir)
    finally:
        signal.alarm(0)
        scancel_all()
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the benchmark's jobs were cancelled", file=sys.stderr)
        sys.exit(130)
    except TimeoutError as err:
        print(f"{err}: the benchmark's jobs were cancelled; raise --time-limit or lower --jobs", file=sys.stderr)
        sys.exit(124)
