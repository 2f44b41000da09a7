"""The soak's three ledgers and their reconciliation (used by ``bench/bench_soak.py``).

* **Airflow**: every task instance of the soak's DAGs, read from the metadata database.
* **Slurm accounting**: every job carrying one of their tags (``sacct --comment``), plus the live queue.
* **XCom**: each successful task's returned job result.

:func:`reconcile` joins them by the provider tag (``make_tag(dag, task, run, map_index)``):

* *lost*: a task that never ended, ended ``success`` without a result, or ended ``failed`` for a
  reason no injected fault explains (only a node failure does: every soak job would succeed);
* *duplicate jobs*: a job of a tag submitted while an earlier job of that tag was still alive or
  had completed (a retry may submit anew only after its job failed);
* *disagreeing results*: a result whose job id, state or exit code is not what accounting says;
* *orphans*: soak jobs still pending or running in the queue once every task has ended.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX
from airflow_provider_hpcai.spec import make_tag

__all__ = ["accounting_by_tag", "airflow_ledger", "live_soak_jobs", "reconcile"]

TERMINAL = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
ACTIVE_JOB = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"})
_SACCT_FIELDS = "JobID,JobName,State,ExitCode,Submit,End,Comment"


def _db(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    con.row_factory = sqlite3.Row
    return con


def _xcom_value(raw: Any) -> Any:
    value = raw
    for _ in range(2):  # Airflow may store the JSON text of a JSON string
        if isinstance(value, (bytes, str)):
            try:
                value = json.loads(value)
            except ValueError:
                return None
    return value


def airflow_ledger(db: Path, dag_prefix: str) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str, int], Any]]:
    """(task instances of the soak's DAGs, {(dag, run, task, map_index): returned value})."""
    with _db(db) as con:
        tis = [dict(r) for r in con.execute(
            "SELECT dag_id, run_id, task_id, map_index, state, try_number FROM task_instance WHERE dag_id LIKE ?",
            (dag_prefix + "%",))]
        xcoms = {(r["dag_id"], r["run_id"], r["task_id"], int(r["map_index"])): _xcom_value(r["value"])
                 for r in con.execute("SELECT dag_id, run_id, task_id, map_index, value FROM xcom "
                                      "WHERE key = 'return_value' AND dag_id LIKE ?", (dag_prefix + "%",))}
    # A mapped task's placeholder (map_index -1, no state) disappears on expansion; skip what never ran.
    return [t for t in tis if not (t["state"] is None and t["map_index"] < 0 and _has_mapped(tis, t))], xcoms


def _has_mapped(tis: list[dict[str, Any]], ti: dict[str, Any]) -> bool:
    return any(o["map_index"] >= 0 and (o["dag_id"], o["run_id"], o["task_id"]) ==
               (ti["dag_id"], ti["run_id"], ti["task_id"]) for o in tis)


def accounting_by_tag(since: str, name_prefix: str) -> dict[str, list[dict[str, str]]]:
    """``{tag: [accounting records, by job id]}`` of the jobs named ``<name_prefix>...`` since ``since``."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-D", f"--format={_SACCT_FIELDS}", f"--starttime={since}"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    by_tag: dict[str, list[dict[str, str]]] = {}
    keys = _SACCT_FIELDS.split(",")
    for line in out.splitlines():
        rec = dict(zip(keys, line.split("|", len(keys) - 1)))
        if rec.get("JobName", "").startswith(name_prefix) and rec.get("Comment", "").startswith(COMMENT_PREFIX):
            by_tag.setdefault(rec["Comment"][len(COMMENT_PREFIX):], []).append(rec)
    for recs in by_tag.values():
        recs.sort(key=lambda r: int(r["JobID"].split("_")[0]))
    return by_tag


def live_soak_jobs(name_prefix: str) -> dict[str, dict[str, str]]:
    """Jobs named ``<name_prefix>...`` the controller still holds: ``{job_id: {state, name, comment}}``."""
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-o", "%i|%T|%j|%k"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[2].startswith(name_prefix):
            jobs[parts[0]] = {"state": parts[1], "name": parts[2], "comment": parts[3]}
    return jobs


def _base(state: str | None) -> str:
    return (state or "").split(" ")[0].rstrip("+")


def _duplicates(recs: list[dict[str, str]]) -> list[str]:
    """Jobs of one tag submitted while an earlier one lived, or after an earlier one completed."""
    dups = []
    for i, rec in enumerate(recs):
        for earlier in recs[:i]:
            if earlier["JobID"] == rec["JobID"]:  # Slurm requeued its own job: one job, not two
                continue
            ended = earlier["End"] if earlier["End"][:1].isdigit() else "9999"
            if _base(earlier["State"]) == "COMPLETED" or rec["Submit"] < ended:
                dups.append(rec["JobID"])
                break
    return dups


def reconcile(tis: Iterable[dict[str, Any]], xcoms: dict[tuple[str, str, str, int], Any],
              by_tag: dict[str, list[dict[str, str]]], live: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Join the three ledgers; the four counts that must be 0, with up to 10 examples of each."""
    lost: list[str] = []
    disagree: list[str] = []
    dup_jobs: list[str] = []
    failed_accounted, failed_without_job, tags_seen = 0, 0, set()
    states: dict[str, int] = {}
    for ti in tis:
        key = (ti["dag_id"], ti["run_id"], ti["task_id"], int(ti["map_index"]))
        name = f"{ti['dag_id']}/{ti['run_id']}/{ti['task_id']}[{ti['map_index']}] try {ti['try_number']}"
        state = ti["state"] or "none"
        states[state] = states.get(state, 0) + 1
        tag = make_tag(key[0], key[2], key[1], key[3])
        tags_seen.add(tag)
        recs = by_tag.get(tag, [])
        dup_jobs += _duplicates(recs)
        if state not in TERMINAL:
            lost.append(f"{name}: still {state}")
            continue
        last = recs[-1] if recs else None
        if state == "success":
            result = xcoms.get(key)
            if not isinstance(result, dict):
                lost.append(f"{name}: success without a result in XCom")
                continue
            job = next((r for r in reversed(recs) if r["JobID"] == str(result.get("job_id"))), None)  # last requeue
            code = job["ExitCode"].split(":")[0] if job else None
            if job is None or _base(job["State"]) != _base(result.get("state")) or \
                    str(result.get("exit_code")) != code:
                disagree.append(f"{name}: result job {result.get('job_id')} {result.get('state')} exit "
                                f"{result.get('exit_code')}; accounting {job and (job['State'], job['ExitCode'])}")
        elif state == "failed":
            # In the soak no one cancels a job and every script succeeds: the only failure an injected
            # fault explains is a node failure (the node set DOWN kills its jobs; the retry excludes the
            # only node and cannot run). Any other failed task lost its job's work.
            if last is None:
                failed_without_job += 1
                lost.append(f"{name}: failed without a Slurm job")
            elif any(_base(r["State"]) == "NODE_FAIL" for r in recs):
                failed_accounted += 1
            else:
                lost.append(f"{name}: failed; its last job {last['JobID']} ended {last['State']} "
                            f"(exit {last['ExitCode']}), which no injected fault explains")
    orphans = [f"{j} {job['name']} {job['state']}" for j, job in live.items() if job["state"] in ACTIVE_JOB]
    return {
        "task_instances": sum(states.values()), "final_states": states,
        "tasks_lost": len(lost), "lost": lost[:10],
        "duplicate_jobs": len(dup_jobs), "duplicates": dup_jobs[:10],
        "results_disagreeing": len(disagree), "disagreeing": disagree[:10],
        "orphaned_jobs": len(orphans), "orphans": orphans[:10],
        "failed_by_node_failure": failed_accounted, "failed_without_a_job": failed_without_job,
        "jobs_in_accounting": sum(len(v) for v in by_tag.values()),
        "jobs_of_unknown_tags": sum(len(v) for t, v in by_tag.items() if t not in tags_seen),
    }
