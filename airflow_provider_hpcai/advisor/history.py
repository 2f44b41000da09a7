"""Job history: what each finished job asked for and what it used.

A :class:`JobRecord` is built either from the Slurm accounting dict the provider's hook
returns (:func:`record_from_accounting`) or from a Standard Workload Format record
(:func:`record_from_swf`). :class:`HistoryStore` keeps records in one SQLite file under the
advisor's home folder. Records of the same *series* (same DAG task, else same user and
kernel, else same user) are what the models learn recency features from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["HistoryStore", "JobRecord", "record_from_accounting", "record_from_swf", "series_key", "size_of"]

# Accounting states that mean "the job was killed for exceeding a limit".
TIMEOUT_STATES = frozenset({"TIMEOUT", "DEADLINE"})
OOM_STATES = frozenset({"OUT_OF_MEMORY", "OOM"})


def series_key(key: Mapping[str, Any]) -> str:
    """The history series a job belongs to: its DAG task, else user and kernel, else user; per image.

    A job that ran in a container image (``image`` in the key) has a series of its own for that
    image: a new image version starts with no history, so the advisor keeps its request until
    jobs in that image have run, instead of judging it by an earlier image's usage.

    :param key: an advisor key (``dag_id``, ``task_id``, ``owner``/``user``, ``kernel``, ``image``).
    """
    dag_id, task_id = key.get("dag_id"), key.get("task_id")
    if dag_id and task_id:
        base = f"task:{dag_id}.{task_id}"
    else:
        user = key.get("owner") or key.get("user") or "?"
        kernel = key.get("kernel")
        base = f"user:{user}/{kernel}" if kernel else f"user:{user}"
    image = key.get("image")
    return f"{base}@{image}" if isinstance(image, str) and image else base


def size_of(params: Mapping[str, Any] | None) -> float | None:
    """The problem size: the product of the positive numeric size parameters (``None`` if none)."""
    if not params:
        return None
    size = 1.0
    found = False
    for value in params.values():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value):
            size *= float(value)
            found = True
    return size if found else None


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One finished job.

    :param job_id: the scheduler's id (unique within ``source``).
    :param submit_time: submission time, seconds since the epoch.
    :param state: final state, Slurm style (``COMPLETED``, ``TIMEOUT``, ``OUT_OF_MEMORY``...).
    :param elapsed_seconds: wall time used.
    :param requested_seconds: the wall-time limit it ran under.
    :param max_rss_bytes: peak memory (per node), when known.
    :param requested_memory_bytes: memory it asked for (per node), when known.
    :param cpus: CPU cores in all.
    :param gpus: GPUs per node.
    :param total_cpu_seconds: CPU time used, when known.
    :param user: the user (Airflow task owner, or trace user id).
    :param dag_id: Airflow DAG id, when it came from a DAG.
    :param task_id: Airflow task id.
    :param kernel: simulation kernel or application name.
    :param size_params: numeric problem-size parameters (``{"nx": 512, "steps": 100}``).
    :param source: where the record came from (``slurm``, ``swf``...).
    :param image: the container image the job ran in (``None``: none, or not known).
    """

    job_id: str
    submit_time: float
    state: str
    elapsed_seconds: float | None
    requested_seconds: float | None
    max_rss_bytes: float | None = None
    requested_memory_bytes: float | None = None
    cpus: int = 1
    gpus: int = 0
    total_cpu_seconds: float | None = None
    user: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    kernel: str | None = None
    size_params: dict[str, float] = dataclasses.field(default_factory=dict)
    source: str = "slurm"
    image: str | None = None

    @property
    def series(self) -> str:
        """The history series key (see :func:`series_key`)."""
        return series_key(
            {"dag_id": self.dag_id, "task_id": self.task_id, "user": self.user, "kernel": self.kernel,
             "image": self.image}
        )

    @property
    def finish_time(self) -> float:
        """When the job's result became known (submit time plus elapsed; queue wait is unknown)."""
        return self.submit_time + (self.elapsed_seconds or 0.0)

    @property
    def timed_out(self) -> bool:
        return self.state.upper() in TIMEOUT_STATES

    @property
    def out_of_memory(self) -> bool:
        return self.state.upper() in OOM_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


#: The operator's failure kinds (``result["failure"]``) that name a limit the job ran into.
_FAILURE_STATES = {"oom": "OUT_OF_MEMORY", "timeout": "TIMEOUT"}


def _state_of(accounting: Mapping[str, Any]) -> str:
    """The record's state: ``OUT_OF_MEMORY``/``TIMEOUT`` when the result's ``failure`` says so.

    Without cgroups Slurm ends a memory-killed job ``FAILED`` (signal 9); the operator's
    classification (from the job's steps and output) is what tells the model it was a kill.
    """
    failure = accounting.get("failure")
    if isinstance(failure, str) and failure in _FAILURE_STATES:
        return _FAILURE_STATES[failure]
    return str(accounting["state"]).upper().split()[0]


def record_from_accounting(accounting: Mapping[str, Any], key: Mapping[str, Any]) -> JobRecord:
    """Build a record from the hook's accounting dict and the operator's advisor key.

    :param accounting: ``job_id``, ``state``, ``exit_code``, ``elapsed_seconds``, ``max_rss_bytes``,
        ``total_cpu_seconds``, ``node_list``, ``requested`` (``Resources.to_dict()``), ``submit_time``
        (epoch or ISO text; sacct's ``submit`` also works; missing: now minus the run time) and,
        from the operator's result, ``failure`` (``oom``/``timeout`` become the record's state).
    :param key: the operator's ``advisor_key()``: ``dag_id``, ``task_id``, ``owner``, optional
        ``kernel``, ``image`` (the container's) and numeric size parameters (any other numeric keys).
    :raises InvalidJobSpecError: when ``job_id`` or ``state`` is missing.
    """
    if not accounting.get("job_id") or not accounting.get("state"):
        raise InvalidJobSpecError("an accounting record needs 'job_id' and 'state'; pass what the hook returned")
    requested = accounting.get("requested") or {}
    submit = accounting.get("submit_time") or accounting.get("submit")
    if isinstance(submit, str):
        from datetime import datetime

        try:
            submit = datetime.fromisoformat(submit).timestamp()
        except ValueError:
            submit = None
    if _number(submit) is None:  # the operator records a job as it finishes: now minus its run time
        submit = time.time() - (_number(accounting.get("elapsed_seconds")) or 0.0)
    ntasks = int(requested.get("ntasks") or 1)
    cpus_per_task = int(requested.get("cpus_per_task") or 1)
    gpus = requested.get("gpus")
    if isinstance(gpus, str):
        gpus = int(gpus.rpartition(":")[2] or 0)
    reserved = {"dag_id", "task_id", "owner", "user", "kernel", "image", "run_id", "map_index"}
    size_params = {
        str(k): float(v)
        for k, v in key.items()
        if k not in reserved and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    size_params.update({str(k): float(v) for k, v in (key.get("size_params") or {}).items()})
    return JobRecord(
        job_id=str(accounting["job_id"]),
        submit_time=float(submit),
        state=_state_of(accounting),
        elapsed_seconds=_number(accounting.get("elapsed_seconds")),
        requested_seconds=_number(requested.get("time_limit")),
        max_rss_bytes=_number(accounting.get("max_rss_bytes")),
        requested_memory_bytes=_number(requested.get("memory")),
        cpus=ntasks * cpus_per_task,
        gpus=int(gpus or 0),
        total_cpu_seconds=_number(accounting.get("total_cpu_seconds")),
        user=key.get("owner") or key.get("user"),
        dag_id=key.get("dag_id"),
        task_id=key.get("task_id"),
        kernel=key.get("kernel"),
        size_params=size_params,
        source="slurm",
        image=key.get("image") if isinstance(key.get("image"), str) else None,
    )


def record_from_swf(record: Any) -> JobRecord:
    """Build a record from an :class:`~airflow_provider_hpcai.advisor.swf.SwfRecord`.

    The trace's executable number stands in for the kernel; memory is in KB in SWF.
    """
    memory = record.used_memory_kb
    requested_memory = record.requested_memory_kb
    run = record.run_time
    requested = record.requested_time
    state = record.state
    if run is not None and requested is not None and run >= requested and state != "CANCELLED":
        state = "TIMEOUT"
    return JobRecord(
        job_id=str(record.job_id),
        submit_time=float(record.submit_time or 0),
        state=state,
        elapsed_seconds=None if run is None else float(run),
        requested_seconds=None if requested is None else float(requested),
        max_rss_bytes=None if memory is None else memory * 1024.0,
        requested_memory_bytes=None if requested_memory is None else requested_memory * 1024.0,
        cpus=int(record.processors or 1),
        user=None if record.user_id is None else f"u{record.user_id}",
        kernel=None if record.executable is None else f"app{record.executable}",
        source="swf",
    )


class HistoryStore:
    """Job records in one SQLite file (``<home>/history.sqlite``).

    Adding a record twice (same source and job id) keeps the newer one.

    :param home: the advisor's home folder (created when missing).
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = os.path.abspath(os.fspath(home))
        self.path = os.path.join(self.home, "history.sqlite")

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.home, exist_ok=True)
        connection = sqlite3.connect(self.path)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS jobs (source TEXT NOT NULL, job_id TEXT NOT NULL, "
            "submit_time REAL NOT NULL, series TEXT NOT NULL, payload TEXT NOT NULL, "
            "PRIMARY KEY (source, job_id))"
        )
        connection.execute("CREATE INDEX IF NOT EXISTS jobs_series ON jobs (series, submit_time)")
        return connection

    def add(self, records: JobRecord | Iterable[JobRecord]) -> int:
        """Store one record or many; returns how many were written."""
        batch = [records] if isinstance(records, JobRecord) else list(records)
        rows = [(r.source, r.job_id, r.submit_time, r.series, json.dumps(r.to_dict())) for r in batch]
        with self._connect() as connection:
            connection.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?)", rows)
        connection.close()
        if any(r.source == "slurm" for r in batch):  # the operators' end-of-job record: the live guard learns
            from airflow_provider_hpcai.advisor.live_guard import note_finished

            note_finished(self.home, batch)
        return len(rows)

    def last_runs(self, series: str, n: int = 2, *, cpus: int | None = None) -> list[float]:
        """The run times of the series' last ``n`` finished jobs (newest first), each capped at its request.

        What ``estimate`` mode plans with (Tsafrir's mean of the last two) and the guard's
        max-of-20 candidate; one indexed query.

        :param cpus: only the series' jobs of this many cores in all (the guard's opt-in
            ``user_procs_max20``); the same indexed query, filtered on the record's ``cpus``.
        """
        if not os.path.exists(self.path):
            return []
        query, args = "SELECT payload FROM jobs WHERE series = ?", [series]
        if cpus is not None:
            query += " AND json_extract(payload, '$.cpus') = ?"
            args.append(int(cpus))
        connection = self._connect()
        try:
            rows = connection.execute(
                query + " ORDER BY submit_time DESC, job_id DESC LIMIT ?", (*args, max(int(n), 0) * 2 + 2),
            ).fetchall()
        finally:
            connection.close()
        runs: list[float] = []
        for (payload,) in rows:
            record = JobRecord.from_dict(json.loads(payload))
            run = record.elapsed_seconds
            if run is None or run <= 0:
                continue
            if record.requested_seconds:
                run = min(run, record.requested_seconds)
            runs.append(float(run))
            if len(runs) == n:
                break
        return runs

    def records(self, *, series: str | None = None, since: float | None = None) -> list[JobRecord]:
        """Records in submission order, optionally of one series and/or submitted at or after ``since``."""
        if not os.path.exists(self.path):
            return []
        query, args = "SELECT payload FROM jobs WHERE 1=1", []
        if series is not None:
            query += " AND series = ?"
            args.append(series)
        if since is not None:
            query += " AND submit_time >= ?"
            args.append(since)
        query += " ORDER BY submit_time, job_id"
        connection = self._connect()
        try:
            return [JobRecord.from_dict(json.loads(row[0])) for row in connection.execute(query, args)]
        finally:
            connection.close()

    def job_ids(self, source: str | None = None) -> set[str]:
        """The job ids stored (of one ``source`` when given): lets importers skip known jobs."""
        if not os.path.exists(self.path):
            return set()
        query, args = "SELECT job_id FROM jobs", []
        if source is not None:
            query += " WHERE source = ?"
            args.append(source)
        connection = self._connect()
        try:
            return {str(row[0]) for row in connection.execute(query, args)}
        finally:
            connection.close()

    def __len__(self) -> int:
        if not os.path.exists(self.path):
            return 0
        connection = self._connect()
        try:
            return int(connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        finally:
            connection.close()
