"""Soak: a steady stream of Slurm tasks under random faults, two triggerers, and nothing lost.

A real Airflow (api-server, scheduler, dag-processor and **two triggerers**; SQLite, LocalExecutor)
runs three DAGs, one per Slurm transport (``slurm_local``, ``slurm_rest``, ``slurm_ssh``). Each run
holds a ``SlurmJobOperator`` mapped ``--width`` times and a single one, all deferrable, with
retries; the local DAG adds one task that waits in its worker. A feeder triggers runs so that about
``--tasks`` task instances are in flight, for ``--minutes``. Meanwhile a fault injector (seeded
``random.Random``, each fault logged with its start and end time) draws from a shuffled deck of:

worker SIGKILL, triggerer SIGKILL (either one; restarted once the other holds its triggers),
``restart-ctld``, a 40 s controller outage, slurmrestd down, sshd killed, slurmdbd down for two
minutes, the node set DOWN and resumed (skipped while others' jobs run on it), the metadata
database locked for a few seconds.

Every fault is taken from ``tests/faults`` (``cluster.local_slurm``, ``kill_pidfile_tree``,
``set_node``, ``restore_cluster``...). A component that exits on its own is restarted (as systemd
would) and counted. At the end it waits for every task to finish and reconciles three ledgers
(:mod:`bench.soak_ledger`): tasks lost, duplicate jobs, results disagreeing with accounting,
orphaned jobs in the queue; plus triggerer RSS over time and each triggerer hand-over's duration.

Usage (root, from the repository root, with the local cluster and sshd up)::

    .venv/bin/python bench/bench_soak.py                  # quick form: 30 minutes, 200 tasks in flight
    .venv/bin/python bench/bench_soak.py --full           # 120 minutes
    .venv/bin/python bench/bench_soak.py --minutes 10 --tasks 40 --seed 7   # shortened

Prints human lines, then one JSON line; exits 1 if any of the four counts is not 0. Cancels its
own jobs (named ``hpcai_soak_*``), restores every service and stops Airflow on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_controller_load import load_cluster_env
from bench.soak_ledger import TERMINAL, accounting_by_tag, airflow_ledger, live_soak_jobs, reconcile
from tests.faults import cluster as fx
from tests.faults.stack import AirflowStack, cmdline, rss_bytes

PREFIX = "hpcai_soak_"
DAGS = {"local": "slurm_local", "rest": "slurm_rest", "ssh": "slurm_ssh"}
TRIGGERERS = ("triggerer", "triggerer2")
FAULTS = ("worker_sigkill", "triggerer_sigkill", "restart_ctld", "ctld_outage_40s", "slurmrestd_down", "sshd_killed",
          "slurmdbd_down_2min", "node_down_resumed", "metadata_db_locked")
#: The title of a process running one task instance (LocalExecutor's idle workers have another).
_TASK_TITLE = re.compile(r"^airflow worker -- [0-9a-f]{8}-[0-9a-f]{4}-")
CTLD_OUTAGE_S, DBD_DOWN_S, REST_DOWN_S, SSHD_DOWN_S, NODE_DOWN_S, DB_LOCK_S = 40, 120, 45, 30, 10, 8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}Z] {msg}", flush=True)


def dag_source(short: str, conn_id: str, *, workdir: str, width: int, job_s: tuple[int, int], retries: int) -> str:
    """One soak DAG: a task mapped ``width`` times and a single one (the local DAG: and one blocking)."""
    low, span = job_s[0], max(1, job_s[1] - job_s[0])
    script = f'echo "soak $N start"; sleep $(( {low} + RANDOM % {span} )); seq 1 50; echo soak-done'
    blocking = ("    SlurmJobOperator(task_id='blocking', deferrable=False, environment={'N': 'b'}, **common,\n"
                "                     script='echo blocking; sleep $(( 20 + RANDOM % 30 )); echo soak-done')\n"
                if short == "local" else "")
    return f"""
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

# avoid_failed_nodes=False: the local cluster has one node; a retry that excluded it could run nowhere
# (tests/faults/test_node_failure.py covers the exclusion itself).
common = dict(slurm_conn_id={conn_id!r}, workdir={workdir!r}, poll_interval=5, avoid_failed_nodes=False,
              job_resources=Resources(cpus_per_task=1, memory="16M", time_limit=1800, partition="long"))
with DAG({PREFIX + short!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_runs=200,
         max_active_tasks=1000, default_args={{"retries": {retries}, "retry_delay": timedelta(seconds=5)}}):
    SlurmJobOperator.partial(task_id="mapped", deferrable=True, script={script!r}, **common).expand(
        environment=[{{"N": str(i)}} for i in range({width})])
    SlurmJobOperator(task_id="single", deferrable=True, environment={{"N": "s"}}, script={script!r}, **common)
{blocking}"""


class SoakStack(AirflowStack):
    """An :class:`AirflowStack` that may run a component twice (``triggerer2`` is a second triggerer)."""

    def start_component(self, name: str, extra_env: Any = None) -> subprocess.Popen[bytes]:
        if name != "triggerer2":
            return super().start_component(name, extra_env)
        self._starts[name] = self._starts.get(name, 0) + 1
        with open(self.home / f"{name}.{self._starts[name]}.out", "wb") as out:
            proc = subprocess.Popen([str(pathlib.Path(sys.executable).parent / "airflow"), "triggerer"],
                                    env={**self.env, **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.home, start_new_session=True)
        self.procs[name] = proc
        return proc


class Soak:
    """The run: stack, feeder, fault injector, samples and the fault log."""

    def __init__(self, args: argparse.Namespace, scratch: pathlib.Path) -> None:
        self.args, self.scratch = args, scratch
        self.rng = random.Random(args.seed)
        env = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "SLURM_", "HPCAI_"))}
        env.update(AIRFLOW__HPCAI__POLL_INTERVAL="5", AIRFLOW__HPCAI__MAX_POLL_INTERVAL="15",
                   AIRFLOW__HPCAI__ADVISOR_HOME=str(scratch / "advisor"), AIRFLOW__CORE__PARALLELISM="24",
                   AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="1000", AIRFLOW__LOGGING__LOGGING_LEVEL="INFO")
        self.stack = SoakStack(scratch / "home", scratch / "dags", env)
        self.db = self.stack.home / "airflow.db"
        self.lock = threading.Lock()
        self.busy: set[str] = set()  # components the injector is killing on purpose
        self.faults: list[dict[str, Any]] = []
        self.handovers: list[dict[str, Any]] = []
        self.restarts: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.trig_jobs: dict[str, int] = {}
        self.runs = 0
        self.stop_faults = threading.Event()
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ metadata database (read-only)
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=60) as con:
            return list(con.execute(sql, params))

    def in_flight(self) -> dict[str, int]:
        rows = self.query("SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id LIKE ? "
                          "GROUP BY 1", (PREFIX + "%",))
        return {str(s): int(n) for s, n in rows}

    def triggerer_job_ids(self) -> set[int]:
        return {int(r[0]) for r in self.query("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'")}

    def start_triggerer(self, name: str) -> None:
        """Start one triggerer and learn its job id (the ``triggerer_id`` of the triggers it holds)."""
        known = self.triggerer_job_ids() | set(self.trig_jobs.values())
        self.stack.start_component(name)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            new = self.triggerer_job_ids() - known
            if new:
                self.trig_jobs[name] = max(new)
                return
            time.sleep(1)
        raise TimeoutError(f"{name} registered no TriggererJob in 180 s:\n{self.stack.output(name)[-3000:]}")

    # ------------------------------------------------------------------ faults
    def fault_worker_kill(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [p for p in self.stack.pids("scheduler") if _TASK_TITLE.match(cmdline(p))]
            if workers:
                victim = self.rng.choice(sorted(workers))
                title = cmdline(victim)
                os.kill(victim, signal.SIGKILL)
                return f"SIGKILL {victim} ({title}), one of {len(workers)} task processes"
            time.sleep(1)
        return "skipped: no task process in a worker for 60 s"

    def fault_triggerer_kill(self) -> str:
        held = {name: [int(r[0]) for r in self.query("SELECT id FROM trigger WHERE triggerer_id = ?", (job,))]
                for name, job in self.trig_jobs.items()}
        holding = sorted(n for n in TRIGGERERS if held.get(n))
        victim = self.rng.choice(holding or list(TRIGGERERS))
        mine, old_job = held.get(victim, []), self.trig_jobs[victim]
        with self.lock:
            self.busy.add(victim)
        killed = time.monotonic()
        self.stack.kill_component(victim, signal.SIGKILL)
        handover, taker = None, set()
        while mine and time.monotonic() - killed < 180:
            rows = self.query(f"SELECT id, triggerer_id FROM trigger WHERE id IN ({','.join('?' * len(mine))})", mine)
            if all(t not in (None, old_job) for _, t in rows):
                handover, taker = time.monotonic() - killed, {t for _, t in rows}
                break
            time.sleep(0.5)
        names = {job: n for n, job in self.trig_jobs.items()}
        takers = sorted(names.get(t, str(t)) for t in taker)
        self.handovers.append({"victim": victim, "triggers": len(mine), "taken_by": takers,
                               "handover_s": None if handover is None else round(handover, 1)})
        self.start_triggerer(victim)
        with self.lock:
            self.busy.discard(victim)
        took = f"{handover:.1f} s" if handover is not None else "never (in 180 s)" if mine else "n/a (it held none)"
        return f"SIGKILL {victim} holding {len(mine)} triggers; hand-over to {takers or '-'} took {took}"

    def _down_then_up(self, pidfile: pathlib.Path, seconds: float, up: Callable[[], None]) -> str:
        killed = fx.kill_pidfile_tree(pidfile)
        time.sleep(seconds)
        up()
        return f"killed {len(killed)} processes of {pidfile.name}; back after {seconds:.0f} s"

    def fault_node_down(self) -> str:
        others = [f"{j} {job['name']}" for j, job in fx.live_jobs().items()
                  if job["state"] == "RUNNING" and not job["name"].startswith(PREFIX)]
        if others:
            return f"skipped: others' jobs run on the node ({', '.join(others[:3])})"
        mine = sum(1 for job in fx.live_jobs().values() if job["state"] == "RUNNING")
        fx.set_node("down", reason="hpcai soak: node failure")
        time.sleep(NODE_DOWN_S)
        fx.set_node("resume")
        return f"node {fx.node_name()} DOWN for {NODE_DOWN_S} s under {mine} running soak jobs, then resumed"

    def fault_db_lock(self) -> str:
        con = sqlite3.connect(str(self.db), timeout=60, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            time.sleep(DB_LOCK_S)
            con.execute("ROLLBACK")
        finally:
            con.close()
        return f"metadata database locked (BEGIN EXCLUSIVE) for {DB_LOCK_S} s"

    def fault_table(self) -> dict[str, Callable[[], str]]:
        slurm = pathlib.Path(os.environ.get("HPCAI_SLURM_HOME") or "/var/lib/hpcai-slurm") / "run"
        sshd = pathlib.Path(os.environ.get("HPCAI_SSHD_HOME") or "/var/lib/hpcai-sshd")

        def ctld_outage() -> str:
            fx.local_slurm("stop-ctld")
            time.sleep(CTLD_OUTAGE_S)
            fx.local_slurm("up", timeout=300)
            return f"slurmctld stopped for {CTLD_OUTAGE_S} s"

        def restart_ctld() -> str:
            fx.local_slurm("restart-ctld")
            return "slurmctld restarted"

        return {
            "worker_sigkill": self.fault_worker_kill,
            "triggerer_sigkill": self.fault_triggerer_kill,
            "restart_ctld": restart_ctld,
            "ctld_outage_40s": ctld_outage,
            "slurmrestd_down": lambda: self._down_then_up(slurm / "slurmrestd.pid", REST_DOWN_S,
                                                          lambda: fx.local_slurm("up", timeout=300)),
            "sshd_killed": lambda: self._down_then_up(sshd / "sshd.pid", SSHD_DOWN_S, lambda: fx.local_sshd("up")),
            "slurmdbd_down_2min": lambda: self._down_then_up(slurm / "slurmdbd.pid", DBD_DOWN_S,
                                                             lambda: fx.local_slurm("up", timeout=300)),
            "node_down_resumed": self.fault_node_down,
            "metadata_db_locked": self.fault_db_lock,
        }

    def inject(self, until: float) -> None:
        """The injector thread: a fault every ``--fault-every`` s (jittered) from a shuffled deck."""
        table, deck = {k: v for k, v in self.fault_table().items() if k in self.args.faults}, []
        self.stop_faults.wait(self.args.first_fault)
        while not self.stop_faults.is_set() and time.monotonic() < until:
            if not deck:
                deck = sorted(table)
                self.rng.shuffle(deck)
            name = deck.pop(0)
            started = time.time()
            log(f"FAULT {name} ...")
            try:
                what, ok = table[name](), True
            except Exception as err:  # a fault that failed to inject is reported, never hidden
                what, ok = f"{type(err).__name__}: {err}", False
            entry = {"fault": name, "start": _iso(started), "end": _iso(time.time()),
                     "seconds": round(time.time() - started, 1), "ok": ok, "what": what}
            self.faults.append(entry)
            log(f"FAULT {name} done in {entry['seconds']} s: {what}")
            self.stop_faults.wait(self.args.fault_every * self.rng.uniform(0.7, 1.3))

    # ------------------------------------------------------------------ the run
    def supervise(self) -> None:
        """Restart a component that exited by itself (not one the injector is killing)."""
        with self.lock:
            for name, proc in list(self.stack.procs.items()):
                if proc.poll() is not None and name not in self.busy:
                    self.restarts.append({"component": name, "exit": proc.returncode, "at": _iso(time.time())})
                    log(f"! {name} exited with {proc.returncode}; restarting it\n{self.stack.output(name)[-1500:]}")
                    if name in TRIGGERERS:
                        self.start_triggerer(name)
                    else:
                        self.stack.start_component(name)

    def sample(self, counts: dict[str, int]) -> None:
        rss = {n: round(rss_bytes(self.stack.pids(n)) / 2**20, 1) for n in TRIGGERERS}
        held = dict(self.query("SELECT triggerer_id, count(*) FROM trigger GROUP BY 1"))
        entry = {"t": round(time.monotonic() - self.t0), "rss_mib": rss,
                 "triggers": {n: held.get(j, 0) for n, j in self.trig_jobs.items()},
                 "in_flight": sum(v for k, v in counts.items() if k not in TERMINAL), "states": counts}
        self.samples.append(entry)
        log(f"t={entry['t']:5d}s in flight {entry['in_flight']:4d} {counts} triggers {entry['triggers']} RSS {rss}")

    def feed(self, counts: dict[str, int]) -> None:
        in_flight = sum(v for k, v in counts.items() if k not in TERMINAL)
        size = self.args.width + 2
        for _ in range(3):
            if in_flight + size > self.args.tasks:
                return
            short = list(DAGS)[self.runs % len(DAGS)]
            try:
                self.stack.trigger(PREFIX + short)
            except Exception as err:  # the API may be down or the database locked: next tick
                log(f"! could not trigger {PREFIX + short}: {err}")
                return
            self.runs += 1
            in_flight += size

    def run(self) -> dict[str, Any]:
        args, stack = self.args, self.stack
        workdir = self.scratch / "jobs"
        workdir.mkdir(mode=0o1777)
        workdir.chmod(0o1777)
        stack.migrate()
        for short, conn in DAGS.items():
            (stack.dags / f"{PREFIX}{short}.py").write_text(dag_source(
                short, conn, workdir=str(workdir), width=args.width, job_s=(args.job_min, args.job_max),
                retries=args.retries))
        for name in ("api-server", "scheduler", "dag-processor"):
            stack.start_component(name)
        for name in TRIGGERERS:
            self.start_triggerer(name)
        stack.wait_healthy()
        for short in DAGS:
            stack.wait_dag(PREFIX + short, timeout=300)
        log(f"Airflow up (triggerer jobs {self.trig_jobs}); feeding about {args.tasks} tasks for {args.minutes:g} min")
        self.t0 = time.monotonic()
        until = self.t0 + args.minutes * 60
        injector = threading.Thread(target=self.inject, args=(until,), name="faults", daemon=True)
        injector.start()
        next_sample = 0.0
        while time.monotonic() < until:
            self.supervise()
            try:
                counts = self.in_flight()
            except sqlite3.Error as err:
                log(f"! reading the metadata database: {err}")
                time.sleep(5)
                continue
            self.feed(counts)
            if time.monotonic() >= next_sample:
                self.sample(counts)
                next_sample = time.monotonic() + args.sample
            time.sleep(10)
        self.stop_faults.set()
        log("feeding stopped; waiting for the current fault to end")
        injector.join(timeout=400)
        log(f"restoring the cluster: {fx.restore_cluster()}")
        drained = self.drain(args.drain_timeout, args.sample)
        return {"drained": drained, "drain_s": round(time.monotonic() - until)}

    def drain(self, timeout: float, every: float) -> bool:
        deadline = time.monotonic() + timeout
        next_sample = 0.0
        while time.monotonic() < deadline:
            self.supervise()
            counts = self.in_flight()
            if time.monotonic() >= next_sample:
                self.sample(counts)
                next_sample = time.monotonic() + every
            if not any(k not in TERMINAL for k in counts):
                return True
            time.sleep(10)
        return False


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def settle_accounting(since: str, timeout: float = 180) -> None:
    """Until accounting holds no soak job as still active (slurmdbd catches up after its outage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            recs = accounting_by_tag(since, PREFIX)
            if not any(r["State"].split(" ")[0] in ("PENDING", "RUNNING") for v in recs.values() for r in v):
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(10)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long runs are fed and faults injected (30)")
    p.add_argument("--full", action="store_true", help="the full form: 120 minutes")
    p.add_argument("--tasks", type=int, default=200, help="task instances in flight (200)")
    p.add_argument("--width", type=int, default=4, help="map width of each run's mapped task (4)")
    p.add_argument("--retries", type=int, default=3, help="retries of every task (3)")
    p.add_argument("--job-min", type=int, default=120, help="shortest job, seconds (120)")
    p.add_argument("--job-max", type=int, default=300, help="longest job, seconds (300)")
    p.add_argument("--seed", type=int, default=18, help="the fault injector's seed (18)")
    p.add_argument("--first-fault", type=float, default=120.0, help="seconds before the first fault (120)")
    p.add_argument("--fault-every", type=float, default=75.0, help="mean seconds between faults (75)")
    p.add_argument("--faults", default=",".join(FAULTS),
                   help=f"comma-separated faults to draw from (default all: {','.join(FAULTS)})")
    p.add_argument("--sample", type=float, default=30.0, help="seconds between samples (30)")
    p.add_argument("--drain-timeout", type=float, default=1200.0, help="bound on the final drain, seconds (1200)")
    args = p.parse_args(argv)
    if args.full:
        args.minutes = 120.0
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(args.faults) - set(FAULTS))
    if unknown or not args.faults:
        p.error(f"unknown faults {unknown}: choose from {', '.join(FAULTS)}")
    if args.tasks < args.width + 2 or args.minutes <= 0 or not 0 < args.job_min < args.job_max:
        p.error("need --tasks >= --width + 2, --minutes > 0, 0 < --job-min < --job-max")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_cluster_env()
    if not shutil.which("sbatch") or not os.environ.get("AIRFLOW_CONN_SLURM_SSH"):
        raise SystemExit("needs the local cluster and sshd: bash scripts/local-slurm up; bash scripts/local-sshd up")
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="hpcai-soak-"))
    scratch.chmod(0o1777)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    soak = Soak(args, scratch)
    result: dict[str, Any] = {"bench": "soak", "seed": args.seed, "minutes": args.minutes, "tasks_target": args.tasks,
                              "width": args.width, "retries": args.retries, "job_s": [args.job_min, args.job_max]}
    try:
        result.update(soak.run())
        settle_accounting(since)
        tis, xcoms = airflow_ledger(soak.db, PREFIX)
        ledger = reconcile(tis, xcoms, accounting_by_tag(since, PREFIX), live_soak_jobs(PREFIX))
        result.update(ledger, runs_triggered=soak.runs)
    except BaseException as err:
        result["error"] = f"{type(err).__name__}: {err}"
        log(f"! the soak stopped early: {result['error']}")
    finally:
        soak.stop_faults.set()
        result.update(faults=soak.faults, handovers=soak.handovers, component_restarts=soak.restarts,
                      samples=soak.samples)
        result["restore"] = fx.restore_cluster()
        soak.stack.stop()
        for name in (f"{PREFIX}{short}.{task}" for short in DAGS for task in ("mapped", "single", "blocking")):
            subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=120, check=False)
        if not os.environ.get("HPCAI_SOAK_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
    report(result)
    counts = [result.get(k) for k in ("tasks_lost", "duplicate_jobs", "results_disagreeing", "orphaned_jobs")]
    return 0 if counts == [0, 0, 0, 0] and "error" not in result else 1


def report(result: dict[str, Any]) -> None:
    log("faults injected:")
    for f in result.get("faults", []):
        log(f"  {f['start']} .. {f['end']} {f['fault']:20s} {'ok' if f['ok'] else 'FAILED'}: {f['what']}")
    for h in result.get("handovers", []):
        log(f"  hand-over: {h}")
    rss = [s["rss_mib"] for s in result.get("samples", [])]
    for name in TRIGGERERS:
        series = [r.get(name) for r in rss]
        log(f"triggerer RSS MiB ({name}) over time: {series}")
    log(f"component restarts (exited by themselves): {result.get('component_restarts')}")
    log(f"final task states: {result.get('final_states')} ({result.get('task_instances')} task instances, "
        f"{result.get('jobs_in_accounting')} jobs in accounting, runs {result.get('runs_triggered')})")
    log(f"failed by the injected node failure: {result.get('failed_by_node_failure')}; "
        f"failed without a job: {result.get('failed_without_a_job')}")
    for key in ("tasks_lost", "duplicate_jobs", "results_disagreeing", "orphaned_jobs"):
        examples = result.get({"tasks_lost": "lost", "duplicate_jobs": "duplicates",
                               "results_disagreeing": "disagreeing", "orphaned_jobs": "orphans"}[key])
        log(f"{key.replace('_', ' ')}: {result.get(key)} {examples or ''}")
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    sys.exit(main())
