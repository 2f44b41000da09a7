"""Refresh the job history from Slurm accounting (through the provider's :class:`SlurmHook`).

The operators record every job they run into the :class:`~.history.HistoryStore` as it ends.
:func:`refresh_history` adds what they could not see: jobs whose task died before recording,
and (``scope="user"``) every other job of the connection's user. It asks accounting once
for everything submitted since the last refresh (kept in ``<home>/refresh_state.json``),
classifies memory kills from the step records (Slurm without cgroups ends them ``FAILED``),
skips jobs already in the store, and gives a job the DAG task of the records it matches by
name (the operator's default job name is ``<dag_id>.<task_id>``), else its name as the kernel.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord, record_from_accounting
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["STATE_FILE", "Scope", "fetch_accounting", "records_from_sacct", "refresh_history"]

STATE_FILE = "refresh_state.json"
Scope = Literal["tagged", "user"]
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_.\-]+")
_DONE = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "DEADLINE"})


def _job_name(dag_id: str, task_id: str) -> str:
    """The operator's default job name (same cleaning as the operator)."""
    return _NAME_CLEAN.sub("_", f"{dag_id}.{task_id}")[:128]


def _state(job: Mapping[str, Any]) -> str:
    from airflow_provider_hpcai.slurm.states import FAILURE_KINDS, classify_failure

    state = str(job.get("state") or "UNKNOWN").upper().split()[0]
    if state in {"FAILED", "CANCELLED"}:
        kind = FAILURE_KINDS.get(classify_failure(
            state, exit_code=job.get("exit_code"), signal=job.get("signal"), steps=job.get("steps"),
            requested_memory_bytes=job.get("requested_memory_bytes"),
        ))
        if kind == "oom":
            return "OUT_OF_MEMORY"
    return state


def records_from_sacct(
    jobs: Mapping[str, Mapping[str, Any]],
    *,
    scope: Scope = "tagged",
    known_tasks: Iterable[tuple[str, str]] = (),
    skip_ids: Iterable[str] = (),
    user: str | None = None,
) -> list[JobRecord]:
    """Job records from :func:`~airflow_provider_hpcai.slurm.commands.parse_sacct` shapes.

    :param jobs: ``{job_id: record}`` as the transport's ``accounting`` returns them.
    :param scope: ``tagged``: only jobs carrying this provider's tag; ``user``: every job.
    :param known_tasks: ``(dag_id, task_id)`` pairs whose default job name identifies the task.
    :param skip_ids: job ids already in the history (the operators' richer records win).
    :param user: the owner to record (the connection's user), when known.
    :return: finished jobs only (running ones are picked up by a later refresh).
    """
    if scope not in ("tagged", "user"):
        raise InvalidJobSpecError(f"scope must be 'tagged' or 'user', got {scope!r}")
    by_name = {_job_name(d, t): (d, t) for d, t in known_tasks}
    skip = {str(j) for j in skip_ids}
    out: list[JobRecord] = []
    for job_id, job in jobs.items():
        if str(job_id) in skip or (scope == "tagged" and not job.get("tag")):
            continue
        state = _state(job)
        if state not in _DONE or job.get("elapsed_seconds") is None:
            continue
        name = str(job.get("name") or "")
        dag_id, task_id = by_name.get(name, (None, None))
        key = {"dag_id": dag_id, "task_id": task_id, "owner": user,
               "kernel": None if dag_id else (name or None)}
        accounting = {
            "job_id": str(job_id),
            "state": state,
            "elapsed_seconds": job.get("elapsed_seconds"),
            "max_rss_bytes": job.get("max_rss_bytes"),
            "total_cpu_seconds": job.get("total_cpu_seconds"),
            "node_list": job.get("node_list"),
            "submit_time": job.get("submit"),
            "requested": {"ntasks": job.get("alloc_cpus") or 1, "cpus_per_task": 1,
                          "memory": job.get("requested_memory_bytes"), "time_limit": job.get("time_limit_seconds")},
        }
        out.append(record_from_accounting(accounting, key))
    return out


def fetch_accounting(hook: Any, since: float, job_ids: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Accounting of the jobs submitted since ``since`` (epoch s), in one query where possible.

    One accounting query (``sacct --starttime`` on the CLI transports, ``/slurmdb/<v>/jobs?start_time=``
    over REST); ``job_ids`` it did not return are asked for by id.

    :param hook: a :class:`~airflow_provider_hpcai.hooks.slurm.SlurmHook`.
    :param since: epoch seconds.
    :param job_ids: extra ids to include (REST transports).
    """
    start = dt.datetime.fromtimestamp(since)
    jobs = dict(hook.accounting_since(start))
    missing = sorted({str(j) for j in job_ids} - set(jobs), key=int)
    if missing:
        jobs.update(hook.get_conn().accounting(missing))
    return jobs


def _read_state(home: str) -> dict[str, Any]:
    try:
        with open(os.path.join(home, STATE_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def refresh_history(
    home: str,
    hook: Any,
    *,
    scope: Scope = "tagged",
    lookback_s: float = 7 * 86400,
    user: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Add the finished jobs accounting knows since the last refresh to ``home``'s history.

    :param home: the advisor home (history store and refresh state).
    :param hook: the :class:`~airflow_provider_hpcai.hooks.slurm.SlurmHook` to ask.
    :param scope: ``tagged`` (this provider's jobs) or ``user`` (every job accounting shows).
    :param lookback_s: how far back the first refresh looks.
    :param user: owner recorded on the new records.
    :param now: the current time (tests).
    :return: ``{"since", "fetched", "added", "total"}``.
    """
    now = time.time() if now is None else now
    store = HistoryStore(home)
    state = _read_state(home)
    # Accounting lags (a job ends after the refresh that saw it running): overlap by an hour.
    since = float(state.get("last_refresh", now - lookback_s)) - 3600.0
    known = store.records()
    jobs = fetch_accounting(hook, since)
    records = records_from_sacct(
        jobs, scope=scope, known_tasks={(r.dag_id, r.task_id) for r in known if r.dag_id and r.task_id},
        skip_ids=store.job_ids("slurm"), user=user,
    )
    added = store.add(records) if records else 0
    os.makedirs(home, exist_ok=True)
    tmp = os.path.join(home, f"{STATE_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"last_refresh": now, "scope": scope}, handle)
    os.replace(tmp, os.path.join(home, STATE_FILE))
    return {"since": since, "fetched": len(jobs), "added": added, "total": len(store)}
