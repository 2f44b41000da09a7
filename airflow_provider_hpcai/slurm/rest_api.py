"""slurmrestd request bodies and response parsers, for OpenAPI v0.0.38 and v0.0.40-v0.0.45.

The versions differ in shape, not meaning: v0.0.38 (Slurm 22.05) takes plain numbers and an
environment mapping; v0.0.40+ wrap numbers as ``{"set": true, "number": n}``, take the
environment as ``["K=V", ...]``, report states as lists and move the script into the job
description (v0.0.41+). Everything here is pure: the transport sends and receives.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.exceptions import ConfigurationError
from airflow_provider_hpcai.resources import format_memory
from airflow_provider_hpcai.slurm import hetjob
from airflow_provider_hpcai.slurm.commands import tag_from_comment
from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX, build_sbatch_script, output_paths
from airflow_provider_hpcai.slurm.states import (
    JobStatus,
    Phase,
    job_exit,
    normalise_state,
    phase_of,
    shell_exit_code,
)
from airflow_provider_hpcai.slurm.usage import efficiency
from airflow_provider_hpcai.spec import JobSpec

__all__ = [
    "SUPPORTED_VERSIONS",
    "api_errors",
    "parse_db_job",
    "parse_jobs",
    "parse_nodes",
    "parse_partitions",
    "parse_submit",
    "served_versions",
    "submit_body",
    "unwrap",
]

#: Newest first: auto-detection tries them in this order.
#: Newest first: ``auto`` takes the first the server lists. v0.0.43-v0.0.45 (26.05) take the
#: v0.0.42 request body and answer in its shapes (checked against 26.05.3's own document).
SUPPORTED_VERSIONS = ("v0.0.45", "v0.0.44", "v0.0.43", "v0.0.42", "v0.0.41", "v0.0.40", "v0.0.38")


def served_versions(document: Any) -> set[str]:
    """The ``/slurm/<version>/`` APIs an OpenAPI document (``GET /openapi/v3``) lists."""
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        return set()
    return {p.split("/")[2] for p in paths if isinstance(p, str) and p.startswith("/slurm/") and p.count("/") >= 3}


def unwrap(value: Any) -> Any:
    """``{"set": true, "number": 5}`` -> 5; ``{"set": false}`` -> None; others unchanged."""
    if isinstance(value, dict) and "number" in value and ("set" in value or "infinite" in value):
        if value.get("infinite"):
            return None
        return value["number"] if value.get("set", True) else None
    return value


def _wrap(version: str, number: int) -> Any:
    return number if version == "v0.0.38" else {"set": True, "infinite": False, "number": number}


#: ``PATH`` of a job submitted over REST (slurmrestd passes no shell's environment on), unless the
#: connection's ``job_path`` extra names the site's own (e.g. where ``srun`` lives: ``/opt/slurm/bin``).
DEFAULT_JOB_PATH = "/usr/local/bin:/usr/bin:/bin"


def check_job_path(path: str) -> str:
    """A ``PATH`` for REST jobs: absolute folders joined by ``:``, no control characters.

    :raises ConfigurationError: otherwise, saying what a valid one looks like.
    """
    folders = path.split(":") if isinstance(path, str) else []
    if not path or len(path) > 4096 or not all(f.startswith("/") and f.isprintable() for f in folders):
        raise ConfigurationError(
            f"job_path {path!r} must be absolute folders joined by ':', e.g. '/opt/slurm/bin:/usr/bin:/bin'")
    return path


def submit_body(spec: JobSpec, workdir: str, version: str, *, path: str = DEFAULT_JOB_PATH) -> dict[str, Any]:
    """The ``POST /slurm/<version>/job/submit`` body for ``spec``.

    The script carries the same ``#SBATCH`` header the CLI path uses; the job description
    repeats every value because slurmrestd builds the job from the description. A heterogeneous
    job (``spec.components``) is sent as ``jobs``, one description per het group (every version
    from v0.0.38 on takes that list; checked against 22.05's and 24.11's own ``/openapi/v3``).

    :param path: the job's ``PATH`` (the spec's own ``environment`` may still set another).
    """
    script = build_sbatch_script(spec, workdir)
    job = _job_description(spec, spec.resources, workdir, version, path)
    if spec.signal:
        batch, _, rest = spec.signal.rpartition(":")
        name, _, seconds = rest.partition("@")
        if version == "v0.0.38":  # 22.05's slurmrestd refuses "B:USR1@<s>" (HTTP 400 "Invalid SIGNAL specification")
            raise ConfigurationError(
                f"job {spec.name}: checkpoint_signal over Slurm 22.05's REST API (v0.0.38) cannot reach the batch "
                "shell; use the CLI transport (local or ssh) for this task, or a Slurm of 23.02 or newer (v0.0.40+)")
        job["kill_warning_signal"] = name
        job["kill_warning_delay"] = _wrap(version, int(seconds))
        if batch:
            job["kill_warning_flags"] = ["BATCH_JOB"]
    if spec.array is not None:
        job["array"] = spec.array
    if spec.exclude_nodes:
        job["excluded_nodes" if version != "v0.0.38" else "exclude"] = (
            spec.exclude_nodes if version == "v0.0.38" else spec.exclude_nodes.split(",")
        )
    jobs = [job, *(_job_description(spec, res, workdir, version, path) for res in spec.components)]
    if spec.exclude_nodes:  # sbatch carries --exclude over to every group
        key = "exclude" if version == "v0.0.38" else "excluded_nodes"
        for component in jobs[1:]:
            component[key] = job[key]
    if version in ("v0.0.38", "v0.0.40"):
        return {"script": script, "jobs": jobs} if spec.components else {"script": script, "job": job}
    job["script"] = script
    return {"jobs": jobs} if spec.components else {"job": job}


def _job_description(spec: JobSpec, res: Any, workdir: str, version: str, path: str) -> dict[str, Any]:
    """One job description (a het group's, for a heterogeneous job): the job-wide fields and ``res``."""
    out, err = output_paths(workdir, array=spec.array is not None)
    env = {"PATH": path, **spec.environment}
    job: dict[str, Any] = {
        "name": spec.name,
        "current_working_directory": workdir,
        "standard_output": out,
        "standard_error": err,
        "tasks": res.ntasks,
        "cpus_per_task": res.cpus_per_task,
    }
    if version == "v0.0.38":
        job["environment"] = env
        job["nodes"] = res.nodes
    else:
        job["environment"] = [f"{k}={v}" for k, v in env.items()]
        job["nodes"] = str(res.nodes)
    if spec.tag:
        job["comment"] = COMMENT_PREFIX + spec.tag
    job["requeue"] = bool(spec.requeue)
    if spec.hold:
        job["hold"] = True
    if res.time_limit_seconds is not None:
        job["time_limit"] = _wrap(version, max(1, -(-res.time_limit_seconds // 60)))
    if res.time_min_seconds is not None:
        job["time_minimum"] = _wrap(version, max(1, -(-res.time_min_seconds // 60)))
    if res.memory_bytes is not None:
        job["memory_per_node"] = _wrap(version, int(format_memory(res.memory_bytes)[:-1]))
    if res.gpu_count:
        gres = f"gpu:{res.gpu_type}:{res.gpu_count}" if res.gpu_type else f"gpu:{res.gpu_count}"
        job["tres_per_node" if version != "v0.0.38" else "gres"] = gres if version == "v0.0.38" else "gres/" + gres
    for key, value in (
        ("partition", res.partition),
        ("account", res.account),
        ("qos", res.qos),
        ("constraints", res.constraint),
        ("reservation", res.reservation),
        ("tasks_per_node", res.ntasks_per_node),
    ):
        if value is not None:
            job[key] = value
    if res.exclusive:
        # v0.0.38 (22.05) parses "exclusive" (its schema's "true" is refused: tested on the real
        # slurmrestd); v0.0.40 takes the flags ["true"]; v0.0.41 deprecates "exclusive" and v0.0.42
        # drops it (24.11's /openapi/v3): "shared": ["none"] is the same JOB_SHARED_NONE that
        # sbatch --exclusive sets.
        if version in ("v0.0.38", "v0.0.40"):
            job["exclusive"] = "exclusive" if version == "v0.0.38" else ["true"]
        else:
            job["shared"] = ["none"]
    return job


#: slurmrestd's answer to a job submitted held (22.05 lists it as an error of an accepted job).
HELD_NOTICE = 2042


def api_errors(payload: dict[str, Any], *, held: bool = False) -> list[str]:
    """Error descriptions a slurmrestd response carries (empty when none).

    ``held``: the job was submitted held, and the notice that says so is not an error.
    """
    messages = []
    for error in payload.get("errors") or []:
        if held and isinstance(error, dict) and HELD_NOTICE in (error.get("error_code"), error.get("error_number")):
            continue
        if isinstance(error, dict):
            text = error.get("description") or error.get("error") or str(error)
            number = error.get("error_number") or error.get("errno")
            messages.append(f"{text} (error {number})" if number else str(text))
        else:
            messages.append(str(error))
    return messages


def parse_submit(payload: dict[str, Any]) -> str:
    """The job id from a submit response."""
    job_id = unwrap(payload.get("job_id"))
    if job_id is None and isinstance(payload.get("result"), dict):
        job_id = unwrap(payload["result"].get("job_id"))
    if job_id is None:
        raise ValueError(f"slurmrestd returned no job id: {api_errors(payload) or payload}")
    return str(job_id)


def _job_state(job: dict[str, Any]) -> str:
    return normalise_state(job.get("job_state"))


def _exit_code(value: Any) -> int | None:
    """The controller's exit code, as :func:`~airflow_provider_hpcai.slurm.states.shell_exit_code` means it."""
    value = unwrap(value)
    if isinstance(value, dict):  # v0.0.40+: {"status": [...], "return_code": {...}, "signal": {...}}
        code, signal = _db_exit(value)
        return shell_exit_code(code, signal)
    if isinstance(value, int):  # v0.0.38 reports the raw wait status: exit code in the high byte
        return value >> 8 if value > 255 or value == 0 else 128 + (value & 0x7F)
    return None


def parse_job_states(payload: dict[str, Any]) -> dict[str, str]:
    """``GET /slurm/<v>/jobs/state/`` -> base state by job id (array tasks keep ``<id>_<index>``)."""
    return {str(job.get("job_id")): normalise_state(job.get("state"))
            for job in payload.get("jobs") or [] if isinstance(job, dict) and job.get("job_id") is not None}


def parse_jobs(payload: dict[str, Any], *, elements: bool = False) -> dict[str, JobStatus]:
    """``GET /slurm/<v>/jobs`` (or ``/job/<id>``) -> statuses keyed by job id.

    Array tasks are folded into their array job: active while any task is, failed if any failed.
    ``elements``: each array element is listed too, under ``<array id>_<index>`` (the pending ones
    the controller still holds as one range record included). The components of a heterogeneous
    job (``het_job_id``, ``het_job_offset``) are folded into one status under the leader's id
    (:func:`~airflow_provider_hpcai.slurm.hetjob.fold_statuses`).
    """
    grouped: dict[str, list[JobStatus]] = {}
    single: dict[str, JobStatus] = {}
    het: dict[str, list[tuple[int, JobStatus]]] = {}
    for job in sorted(payload.get("jobs") or [], key=_task_index):  # the first failed element names the exit code
        het_id, offset = unwrap(job.get("het_job_id")), unwrap(job.get("het_job_offset"))
        if hetjob.component_key(het_id, offset):
            het.setdefault(str(het_id), []).append((offset, JobStatus(
                job_id=str(het_id), state=_job_state(job), reason=str(job.get("state_reason") or "").replace("None", ""),
                exit_code=_exit_code(job.get("exit_code")),
                tag=tag_from_comment(job.get("comment") if isinstance(job.get("comment"), str) else None))))
            continue
        array_id = unwrap(job.get("array_job_id"))
        job_id = str(array_id) if array_id else str(unwrap(job.get("job_id")))
        status = JobStatus(
            job_id=job_id,
            state=_job_state(job),
            reason=str(job.get("state_reason") or "").replace("None", ""),
            exit_code=_exit_code(job.get("exit_code")),
            tag=tag_from_comment(job.get("comment") if isinstance(job.get("comment"), str) else None),
        )
        grouped.setdefault(job_id, []).append(status)
        if elements and array_id:
            task = unwrap(job.get("array_task_id"))
            indexes = [task] if isinstance(task, int) else _array_range(job.get("array_task_string"))
            for index in indexes:
                name = f"{job_id}_{index}"
                single[name] = JobStatus(name, status.state, status.reason, status.exit_code, status.tag)
    folded: dict[str, JobStatus] = {}
    for job_id, statuses in grouped.items():
        for wanted in (Phase.ACTIVE, Phase.FAILED, Phase.UNKNOWN, Phase.SUCCEEDED):
            match = next((s for s in statuses if s.phase is wanted), None)
            if match:
                tag = next((s.tag for s in statuses if s.tag), None)
                folded[job_id] = JobStatus(match.job_id, match.state, match.reason, match.exit_code, tag)
                break
    return {**folded, **hetjob.fold_statuses(het), **single}


def _task_index(job: Any) -> int:
    """An array element's index (a pending range record after every element; other jobs -1), so
    that folding does not depend on the order in which squeue or slurmrestd list the elements."""
    if not isinstance(job, dict) or not unwrap(job.get("array_job_id")):
        return -1
    task = unwrap(job.get("array_task_id"))
    return task if isinstance(task, int) else 1 << 31


def _array_range(text: Any, limit: int = 100_000) -> list[int]:
    """The indexes of an array range record (``"0-4"``, ``"1,3-5:2%2"``); ``[]`` when unreadable."""
    if not isinstance(text, str):
        return []
    found: list[int] = []
    for part in text.split("%")[0].split(","):
        bounds, _, step_text = part.partition(":")
        first, _, last = bounds.partition("-")
        if not first.strip().isdigit() or (last and not last.strip().isdigit()):
            return []
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 1
        found.extend(range(int(first), int(last or first) + 1, step))
        if len(found) > limit:
            return []
    return found


def _tres_mem(tres_list: Any) -> int | None:
    for item in tres_list or []:
        if isinstance(item, dict) and item.get("type") == "mem":
            return int(unwrap(item.get("count")) or 0) or None
    return None


def _db_exit(value: Any) -> tuple[int | None, int | None]:
    """``(return code, signal)`` of an ``exit_code`` object (v0.0.38: ``signal_id``; v0.0.40+: ``id``)."""
    if not isinstance(value, dict):
        return (value if isinstance(value, int) else None), None
    code = unwrap(value.get("return_code"))
    signal = value.get("signal")
    if isinstance(signal, dict):
        signal = unwrap(signal.get("id") if "id" in signal else signal.get("signal_id"))
    return code, (signal if isinstance(signal, int) and signal > 0 else None)


def _cpu_seconds(times: Any) -> float | None:
    """``time.total`` (``{"seconds", "microseconds"}``) in seconds; ``None`` when absent."""
    total = times.get("total") if isinstance(times, dict) else None
    if not isinstance(total, dict):
        return None
    return (unwrap(total.get("seconds")) or 0) + (unwrap(total.get("microseconds")) or 0) / 1e6


def _tres_count(tres_list: Any, kind: str, name: str | None = None) -> int | None:
    """The count of one TRES (``kind``, and ``name`` for ``gres``) in a TRES list; ``None`` if absent."""
    for item in tres_list or []:
        if isinstance(item, dict) and item.get("type") == kind and (name is None or item.get("name") == name):
            count = unwrap(item.get("count"))
            return count if isinstance(count, int) and count >= 0 else None
    return None


def _db_efficiency(job: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """:func:`commands.efficiency` from a slurmdbd job: the same keys and meaning as over sacct."""
    allocated = (job.get("tres") or {}).get("allocated")
    mem_mb = _tres_count(allocated, "mem")
    energy = [_tres_count(((st.get("tres") or {}).get("consumed") or {}).get("total"), "energy")
              for st in job.get("steps") or []]
    usage = [((st.get("tres") or {}).get("requested") or {}).get("total") for st in job.get("steps") or []]
    utils = [u for u in (_tres_count(t, "gres", "gpuutil") for t in usage) if u is not None]
    mems = [m for m in (_tres_count(t, "gres", "gpumem") for t in usage) if m is not None]
    gpu = {"gpu_util_percent": max(utils, default=None), "gpu_mem_bytes": max(mems, default=None)} \
        if utils or mems else None
    return efficiency(
        total_cpu_seconds=record.get("total_cpu_seconds"), elapsed_seconds=record.get("elapsed_seconds"),
        alloc_cpus=_tres_count(allocated, "cpu"), max_rss_bytes=record.get("max_rss_bytes"),
        alloc_memory_bytes=mem_mb * 1024**2 if mem_mb else record.get("requested_memory_bytes"),
        gpus=_tres_count(allocated, "gres", "gpu") or 0, gpu_usage=gpu,
        energy_joules=sum(e for e in energy if e) or None)


def parse_db_job(payload: dict[str, Any], *, elements: bool = False) -> dict[str, dict[str, Any]]:
    """``GET /slurmdb/<v>/job/<id>`` -> the same record shape as :func:`commands.parse_sacct`.

    ``elements``: an array element is keyed ``<array id>_<index>`` (as it was asked for), not by
    the job id slurmdbd gave it. The components of a heterogeneous job (``het.job_id``,
    ``het.job_offset``) are folded into one record under the leader's id, as over sacct
    (:func:`~airflow_provider_hpcai.slurm.hetjob.fold_records`).
    """
    jobs: dict[str, dict[str, Any]] = {}
    for job in payload.get("jobs") or []:
        job_id = str(unwrap(job.get("job_id")))
        array = job.get("array") if isinstance(job.get("array"), dict) else {}
        array_id, task_id = unwrap(array.get("job_id")), unwrap(array.get("task_id"))
        if elements and isinstance(array_id, int) and array_id and isinstance(task_id, int) and task_id >= 0:
            job_id = f"{array_id}_{task_id}"
        het = job.get("het") if isinstance(job.get("het"), dict) else {}
        job_id = hetjob.component_key(unwrap(het.get("job_id")), unwrap(het.get("job_offset"))) or job_id
        state = job.get("state") or {}
        times = job.get("time") or {}
        code, signal = _db_exit(job.get("exit_code"))
        steps = []
        for step in job.get("steps") or []:
            s_code, s_signal = _db_exit(step.get("exit_code"))
            s_tres = (step.get("tres") or {}).get("requested") or {}
            s_state = step.get("state")
            steps.append(
                {
                    "step": str((step.get("step") or {}).get("name") or (step.get("step") or {}).get("id") or ""),
                    "state": normalise_state(s_state if not isinstance(s_state, dict) else s_state.get("current")),
                    "exit_code": s_code,
                    "signal": s_signal,
                    "max_rss_bytes": _tres_mem(s_tres.get("max")),
                    "elapsed_seconds": unwrap((step.get("time") or {}).get("elapsed")),
                    "total_cpu_seconds": _cpu_seconds(step.get("time")),
                }
            )
        comment = job.get("comment")
        comment_text = comment.get("job") if isinstance(comment, dict) else comment
        required = job.get("required") or {}
        req_mem = unwrap(required.get("memory_per_node") or required.get("memory"))
        per_cpu = unwrap(required.get("memory_per_cpu"))
        if not req_mem and isinstance(per_cpu, int) and per_cpu > 0:  # --mem-per-cpu (v0.0.40+): x the CPUs, as sacct
            req_mem = per_cpu * (unwrap(required.get("CPUs")) or 1)
        total_cpu = _cpu_seconds(times)
        if not total_cpu:  # slurmdbd fills the job-level figure with 0: the steps carry it (as in sacct)
            step_cpu = [s["total_cpu_seconds"] for s in steps if s["total_cpu_seconds"]]
            total_cpu = sum(step_cpu) if step_cpu else total_cpu
        peaks = [s["max_rss_bytes"] for s in steps if s["max_rss_bytes"]]
        jobs[job_id] = {
            "job_id": job_id,
            "name": job.get("name"),
            "state": normalise_state(state.get("current") if isinstance(state, dict) else state),
            "exit_code": code,
            "signal": signal,
            "elapsed_seconds": unwrap(times.get("elapsed")),
            "max_rss_bytes": max(peaks) if peaks else None,
            "total_cpu_seconds": total_cpu,
            "node_list": job.get("nodes") if job.get("nodes") not in (None, "", "None assigned") else None,  # as sacct
            "requested_memory_bytes": int(req_mem) * 1024**2 if isinstance(req_mem, int) and req_mem > 0 else None,
            "time_limit_seconds": (unwrap(times.get("limit")) or 0) * 60 or None,
            "alloc_cpus": _tres_count((job.get("tres") or {}).get("allocated"), "cpu"),
            "submit": unwrap(times.get("submission")),
            "start": unwrap(times.get("start")),
            "end": unwrap(times.get("end")),
            "tag": tag_from_comment(comment_text if isinstance(comment_text, str) else None),
            "steps": steps,
        }
        job_exit(jobs[job_id])
        jobs[job_id]["efficiency"] = _db_efficiency(job, jobs[job_id])
    return hetjob.fold_records(jobs)


def parse_nodes(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """``GET /slurm/<v>/nodes`` -> the node records :func:`commands.parse_sinfo` gives."""
    nodes = []
    for node in payload.get("nodes") or []:
        state = node.get("state")
        nodes.append(
            {
                "name": node.get("name"),
                "partition": ",".join(node.get("partitions") or []),
                "state": (" ".join(state) if isinstance(state, list) else str(state or "")).lower(),
                "cpus_allocated": unwrap(node.get("alloc_cpus")) or 0,
                "cpus_idle": unwrap(node.get("alloc_idle_cpus", node.get("idle_cpus"))) or 0,
                "cpus_total": unwrap(node.get("cpus")) or 0,
                "memory_mb": unwrap(node.get("real_memory")),
                "free_memory_mb": unwrap(node.get("free_memory") or node.get("free_mem")),
            }
        )
    return nodes


def parse_partitions(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``GET /slurm/<v>/partitions`` -> partition limits keyed by name.

    ``default`` is ``None`` where the server does not say: 24.11's data parsers (v0.0.40-v0.0.42)
    leave the partition flags out (``add_skip(flags), //FIXME`` in its source), so only v0.0.38
    tells which partition is the default. :meth:`SlurmHook.partition_limits` fills it in from the
    connection's ``partition`` extra then. ``state`` is one word (``UP``) on every version.
    """
    parts: dict[str, dict[str, Any]] = {}
    for part in payload.get("partitions") or []:
        maximums = part.get("maximums") or {}
        max_time = unwrap(maximums.get("time") if maximums else part.get("max_time_limit", part.get("maximum_time")))
        flags = part.get("flags")
        state = part.get("state") or (part.get("partition") or {}).get("state")  # v0.0.40+: ["UP"]
        parts[part["name"]] = {
            "name": part["name"],
            "max_time_seconds": max_time * 60 if isinstance(max_time, int) else None,
            "default": None if flags is None else "default" in str(flags).lower(),
            "state": ",".join(map(str, state)) if isinstance(state, list) else str(state or ""),
            "total_cpus": unwrap(part.get("total_cpus") or (part.get("cpus") or {}).get("total")),
            "nodes": part.get("nodes") if isinstance(part.get("nodes"), str) else (part.get("nodes") or {}).get("configured"),
        }
    return parts


def is_terminal(status: JobStatus) -> bool:
    return phase_of(status.state) in (Phase.SUCCEEDED, Phase.FAILED)
