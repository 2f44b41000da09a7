"""The "HPC jobs" view of one DAG run: each task's job, its usage against its request, its outputs.

Read through public results only: the task instances of the run, and each task's XCom
``return_value`` (the job operators' result dicts: ``job_id``, ``state``, ``node_list``,
``elapsed_seconds``, ``max_rss_bytes``, ``total_cpu_seconds``, ``requested``, ``advisor``...; a
simulation's ``{"kernel", "output_dir", "summary", "job"}``; an analysis' ``{"rows", "outputs"}``).
A task still running has no result yet: its Slurm job is found in the cluster status by the
task's tag, through the plugin's :class:`~.monitor.ClusterMonitor` (cached, single flight), so
however many people watch a run the controller is asked at most once per interval per connection.

Declared outputs (``outputs: [{"kind", "path"}]``, and the images/CSV files of a simulation's
output folder) are listed with a URL; :func:`output_file` serves one only if the run's result
declares it, it lies inside the result's folder *and* under ``[hpcai] local_work_dir`` (a
manifest's ``output_dir`` pointing elsewhere shows nothing), and it is a small image or CSV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MAX_OUTPUT_BYTES", "OUTPUT_TYPES", "job_view", "output_file", "outputs_of", "read_run", "run_view",
           "work_root"]

#: Files the view shows, by extension.
OUTPUT_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".csv": "text/csv", ".json": "application/json"}
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
_MAX_LISTED = 24
_LIVE = {"running", "queued", "scheduled", "deferred", "up_for_retry", "restarting", "up_for_reschedule", None}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _when(value: Any) -> float | None:
    """Seconds from a time as accounting gives it: epoch seconds (REST) or ``2026-12-06T16:25:28`` (sacct)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value[:1].isdigit():
        from datetime import datetime

        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _job_of(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, Mapping):
        return None
    if isinstance(result.get("job"), Mapping) and "job_id" in result["job"]:
        return dict(result["job"])
    return dict(result) if "job_id" in result else None


def job_view(job: Mapping[str, Any]) -> dict[str, Any]:
    """Backend, id, state, nodes, times, requested against used, efficiency, advisor decision."""
    requested = job.get("requested") if isinstance(job.get("requested"), Mapping) else {}
    ntasks = int(requested.get("ntasks") or 1)
    cpus = ntasks * int(requested.get("cpus_per_task") or 1)
    elapsed = _number(job.get("elapsed_seconds"))
    cpu_seconds = _number(job.get("total_cpu_seconds"))
    rss = _number(job.get("max_rss_bytes"))
    memory = _number(requested.get("memory"))
    cpu_eff = round(cpu_seconds / (cpus * elapsed), 3) if cpu_seconds is not None and elapsed else None
    mem_eff = round(rss / memory, 3) if rss is not None and memory else None
    submit, start = _when(job.get("submit")), _when(job.get("start"))
    queue = max(0.0, start - submit) if submit is not None and start is not None else None
    return {
        "backend": job.get("backend"),
        "job_id": job.get("job_id"),
        "state": job.get("state"),
        "node_list": job.get("node_list"),
        "queue_seconds": queue,
        "run_seconds": elapsed,
        "requested": {"cpus": cpus, "memory_bytes": memory, "gpus": requested.get("gpus"),
                      "time_limit": requested.get("time_limit")},
        "used": {"cpu_seconds": cpu_seconds, "max_rss_bytes": rss},
        "efficiency": {"cpu": cpu_eff, "memory": mem_eff},
        "advisor": job.get("advisor"),
        "failure": job.get("failure"),
    }


def outputs_of(result: Any) -> list[dict[str, Any]]:
    """The files a result declares or whose folder it names (images, CSV), at most 24."""
    if not isinstance(result, Mapping):
        return []
    found: list[dict[str, Any]] = []
    for item in result.get("outputs") or []:
        if isinstance(item, Mapping) and isinstance(item.get("path"), str):
            found.append({"path": item["path"], "kind": item.get("kind"), "title": item.get("title")})
    folder = result.get("output_dir")
    if isinstance(folder, str) and os.path.isabs(folder) and os.path.isdir(folder):
        for path in sorted(Path(folder).rglob("*"))[:500]:
            if path.suffix in (".png", ".svg", ".csv") and path.is_file():
                found.append({"path": str(path), "kind": path.suffix[1:], "title": path.name})
    return found[:_MAX_LISTED]


def work_root() -> str:
    """Where outputs may be served from: ``[hpcai] local_work_dir`` (local jobs and analyses write there)."""
    from airflow_provider_hpcai import config

    return os.path.realpath(os.path.expanduser(config.get("local_work_dir") or "~/.hpcai/local-jobs"))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _roots(result: Mapping[str, Any]) -> list[str]:
    roots = []
    if isinstance(result.get("output_dir"), str):
        roots.append(os.path.realpath(result["output_dir"]))
    for item in result.get("outputs") or []:
        if isinstance(item, Mapping) and isinstance(item.get("path"), str):
            roots.append(os.path.realpath(os.path.dirname(item["path"])))
    return roots


def output_file(result: Any, index: int) -> tuple[bytes, str]:
    """The ``index``-th output of a result: ``(bytes, media type)``.

    :raises LookupError: not declared, outside the result's folder, not an image or CSV, or too large.
    """
    listed = outputs_of(result)
    if not isinstance(result, Mapping) or not 0 <= index < len(listed):
        raise LookupError("no such output")
    path = os.path.realpath(listed[index]["path"])
    if not _inside(path, work_root()) or not any(_inside(path, root) for root in _roots(result)):
        raise LookupError("the output lies outside the task's output folder under [hpcai] local_work_dir")
    kind = OUTPUT_TYPES.get(Path(path).suffix.lower())
    if kind is None:
        raise LookupError("only images, CSV and JSON outputs are shown")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_OUTPUT_BYTES + 1)
    except OSError:
        raise LookupError("the output file cannot be read here (is it on another machine?)") from None
    if len(data) > MAX_OUTPUT_BYTES:
        raise LookupError(f"the output is over {MAX_OUTPUT_BYTES >> 20} MiB")
    return data, kind


def read_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The run's state, task instances and XCom results from Airflow's metadata database.

    :raises ServiceUnavailable: the database did not answer (HTTP 503).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_provider_hpcai.plugins.monitor import ServiceUnavailable

    try:
        return _read_run(dag_id, run_id)
    except SQLAlchemyError as err:
        raise ServiceUnavailable(f"Airflow's metadata database did not answer ({type(err).__name__}); "
                                 "the page asks again by itself") from None


def _read_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    from airflow.models import DagRun, TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            return None
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all()
        results = {(x.task_id, x.map_index): XComModel.deserialize_value(x) for x in rows}
        return {
            "state": str(run.state.value if hasattr(run.state, "value") else run.state),
            "tasks": [
                {
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "state": str(ti.state.value) if hasattr(ti.state, "value") else (ti.state and str(ti.state)),
                    "operator": ti.operator,
                    "try_number": ti.try_number,
                    "hostname": ti.hostname,
                    "queued_at": ti.queued_dttm.isoformat() if ti.queued_dttm else None,
                    "start_date": ti.start_date.isoformat() if ti.start_date else None,
                    "end_date": ti.end_date.isoformat() if ti.end_date else None,
                    "duration": ti.duration,
                }
                for ti in tis
            ],
            "results": results,
        }


def run_view(
    dag_id: str,
    run_id: str,
    *,
    reader: Callable[[str, str], dict[str, Any] | None] | None = None,
    live_jobs: Callable[[], list[dict[str, Any]]] = list,
) -> dict[str, Any] | None:
    """The monitor's answer for one run (``None``: no such run).

    :param reader: reads the run (default: Airflow's database).
    :param live_jobs: the Slurm jobs the cluster knows now (from the cached monitor), asked only
        when a task is still running without a result.
    """
    run = (reader or read_run)(dag_id, run_id)
    if run is None:
        return None
    results = run["results"]
    tasks = []
    live: list[dict[str, Any]] | None = None
    for task in sorted(run["tasks"], key=lambda t: (t["start_date"] or "9", t["task_id"], t["map_index"])):
        result = results.get((task["task_id"], task["map_index"]))
        job = _job_of(result)
        entry: dict[str, Any] = {**task, "job": job_view(job) if job else None, "outputs": [],
                                 "summary": result.get("summary") if isinstance(result, Mapping) else None}
        entry["outputs"] = [
            {"title": o.get("title") or os.path.basename(o["path"]), "kind": o.get("kind"), "index": i}
            for i, o in enumerate(outputs_of(result))
        ]
        if job is None and task["state"] in ("running", "deferred"):
            from airflow_provider_hpcai.spec import make_tag

            if live is None:
                live = live_jobs()
            tag = make_tag(dag_id, task["task_id"], run_id, task["map_index"])
            match = next((j for j in live if j.get("tag") == tag), None)
            if match:
                entry["job"] = {**job_view({"backend": "slurm", **match}), "live": True}
        tasks.append(entry)
    return {"dag_id": dag_id, "run_id": run_id, "state": run["state"], "live": run["state"] in ("running", "queued"),
            "tasks": tasks}
