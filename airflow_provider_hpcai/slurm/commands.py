"""Pure builders of Slurm CLI commands (argv lists) and parsers of their output.

No function here runs anything: transports run the argv (locally or over SSH, where it is
joined with :func:`shlex.join`), and hand the text back to the parsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.slurm import hetjob
from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX
from airflow_provider_hpcai.slurm.states import JobStatus, job_exit, normalise_state, worst_element
from airflow_provider_hpcai.slurm.usage import efficiency

__all__ = [
    "SACCT_FIELDS",
    "efficiency",
    "parse_partitions",
    "parse_sacct",
    "parse_sbatch",
    "parse_sinfo",
    "parse_size_bytes",
    "parse_slurm_seconds",
    "parse_squeue",
    "parse_tres",
    "partitions_argv",
    "release_argv",
    "sacct_argv",
    "sacct_json_argv",
    "sbatch_argv",
    "scancel_argv",
    "sinfo_argv",
    "squeue_argv",
    "squeue_json_argv",
    "squeue_mine_argv",
]

_JOB_ID_RE = re.compile(r"^\d+\Z")
#: A job id, or one element of an array (``<array job id>_<index>``).
_JOB_OR_ELEMENT_RE = re.compile(r"^\d{1,19}(?:_\d{1,9})?\Z")
#: %F: the array's base job id (the job id for plain jobs), %K: the array task index, %i: the job id as
#: squeue shows it (``123+1`` for het group 1 of hetjob 123, whose %F is the component's own id 124).
SQUEUE_FORMAT = "%F|%K|%T|%r|%i|%k"
SACCT_FIELDS = (
    "JobID",
    "JobName",
    "State",
    "ExitCode",
    "Elapsed",
    "MaxRSS",
    "TotalCPU",
    "NodeList",
    "ReqMem",
    "Timelimit",
    "AllocCPUS",
    "Submit",
    "Start",
    "End",
    "AllocTRES",
    "TRESUsageInTot",
    "ConsumedEnergyRaw",
    "Comment",  # last: free text may hold the separator
)
#: The fields of sacct output captured before the efficiency fields were asked for (still parsed).
_SACCT_FIELDS_BEFORE_EFFICIENCY = (*SACCT_FIELDS[:14], "Comment")
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def check_job_id(job_id: str | int) -> str:
    """Validate a job id (digits, or ``<array job id>_<index>`` for one array element) before it
    reaches a command line."""
    text = str(job_id).strip()
    if not _JOB_OR_ELEMENT_RE.match(text):
        raise InvalidJobSpecError(f"job id {job_id!r} is not a Slurm job id (digits, or <array id>_<index>)")
    return text


def is_element(job_id: str) -> bool:
    """Whether ``job_id`` names one element of a job array (``123_4``)."""
    return "_" in job_id


def sbatch_argv() -> list[str]:
    """``sbatch`` reading the script from stdin, printing only the job id."""
    return ["sbatch", "--parsable"]


def squeue_argv(job_ids: Sequence[str], *, only_state: bool = False) -> list[str]:
    """One ``squeue`` call for many jobs (one controller RPC, whatever their number).

    ``only_state`` (Slurm 24.05+): ``--only-job-state``, the light REQUEST_JOB_STATE RPC, whose
    cost does not grow with the jobs of others the controller holds (REQUEST_JOB_INFO reads them
    all: 50 ms against 0.05 ms per query with 10,000 foreign jobs on 24.11, docs/benchmarks.md).
    It reports no reason and no comment (the tag): enough to wait on a job, not to adopt one.
    """
    ids = ",".join(check_job_id(j) for j in job_ids)
    light = ["--only-job-state"] if only_state else []
    # --array: one line per array element, pending ones included (elements are waited on one by one).
    return ["squeue", *light, "--noheader", "--array", "--states=all", f"--format={SQUEUE_FORMAT}", f"--jobs={ids}"]


#: The first Slurm release whose squeue has ``--only-job-state``.
ONLY_JOB_STATE_SINCE = (24, 5)


def parse_slurm_version(text: str) -> tuple[int, int] | None:
    """``(24, 11)`` from ``squeue --version`` (``slurm 24.11.5``); ``None`` when unreadable."""
    found = re.search(r"\b(\d{1,4})\.(\d{1,4})\b", (text or "")[:200])
    return (int(found.group(1)), int(found.group(2))) if found else None


def squeue_mine_argv() -> list[str]:
    """All of the calling user's jobs the controller still knows."""
    return ["squeue", "--noheader", "--me", "--states=all", f"--format={SQUEUE_FORMAT}"]


def sacct_argv(job_ids: Sequence[str] | None = None, *, since: str | None = None, allocations: bool = False) -> list[str]:
    """``sacct`` for the given jobs (with their steps unless ``allocations``), parsable."""
    argv = ["sacct", "--parsable2", "--noheader", f"--format={','.join(SACCT_FIELDS)}"]
    if allocations:
        argv.append("--allocations")
    if job_ids:
        argv.append("--jobs=" + ",".join(check_job_id(j) for j in job_ids))
    if since:
        argv.append(f"--starttime={check_since(since)}")
    return argv


def check_since(since: str) -> str:
    """Validate a ``--starttime`` value (``2026-01-31``, ``2026-01-31T12:00[:00]``) before it reaches a command line."""
    if not re.match(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?\Z", since):
        raise InvalidJobSpecError(f"since {since!r} must look like 2026-01-31T12:00:00")
    return since


def squeue_json_argv(job_ids: Sequence[str] | None = None) -> list[str]:
    """``squeue --json`` for the given jobs (all states), or for all of the calling user's jobs.

    Read by :func:`~airflow_provider_hpcai.slurm.cli_json.parse_squeue_json` (Slurm 24.11+; 22.05
    ignores these filters with ``--json``). Array elements are records of their own anyway.

    :param job_ids: the jobs; ``None``: the calling user's (``--me``).
    """
    if job_ids is not None and not job_ids:
        raise InvalidJobSpecError("squeue_json_argv needs at least one job id (or None for the user's jobs)")
    select = ["--me"] if job_ids is None else ["--jobs=" + ",".join(check_job_id(j) for j in job_ids)]
    return ["squeue", "--json", "--states=all", *select]


def sacct_json_argv(job_ids: Sequence[str] | None = None, *, since: str | None = None) -> list[str]:
    """``sacct --json`` for the given jobs, or for the jobs started since ``since`` (with their steps).

    Read by :func:`~airflow_provider_hpcai.slurm.cli_json.parse_sacct_json` (Slurm 24.11+).
    """
    argv = ["sacct", "--json"]
    if job_ids:
        argv.append("--jobs=" + ",".join(check_job_id(j) for j in job_ids))
    if since:
        argv.append(f"--starttime={check_since(since)}")
    return argv


def scancel_argv(job_id: str) -> list[str]:
    return ["scancel", check_job_id(job_id)]


def release_argv(job_id: str) -> list[str]:
    """``scontrol release`` of a held job or array element (``123_4``)."""
    return ["scontrol", "release", check_job_id(job_id)]


def sinfo_argv() -> list[str]:
    """Nodes, one line each: name, partition, state, CPUs (A/I/O/T), memory, free memory."""
    return ["sinfo", "--noheader", "--Node", "--format=%N|%P|%T|%C|%m|%e"]


def partitions_argv() -> list[str]:
    return ["scontrol", "show", "partition", "--oneliner"]


# ------------------------------------------------------------------------------------ parsers
def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` (``"123"`` or ``"123;cluster"``)."""
    first = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = first.split(";")[0].strip()
    if not _JOB_ID_RE.match(job_id):
        raise ValueError(f"sbatch printed no job id: {stdout!r}")
    return job_id


def tag_from_comment(comment: str | None) -> str | None:
    if comment and comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX) :].strip() or None
    return None


def parse_squeue(stdout: str, *, elements: bool = False) -> dict[str, JobStatus]:
    """Parse :data:`SQUEUE_FORMAT` lines; array tasks are folded into their array job, and the
    components of a heterogeneous job into its leader (:mod:`~airflow_provider_hpcai.slurm.hetjob`).

    An array job is active while any task is, and failed if any task failed. ``elements``: each
    array element is listed too, under ``<array id>_<index>`` (from ``squeue --array``). Lines of
    the format before ``%i`` was added (five fields) are still read.
    """
    grouped: dict[str, list[tuple[str, str, str | None]]] = {}
    single: dict[str, JobStatus] = {}
    het: dict[str, list[tuple[int, JobStatus]]] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 5)
        if len(parts) < 5:
            continue
        if len(parts) == 6 and _SHOWN_ID_RE.match(parts[4].strip()):
            job_id, task, state, reason, shown, comment = parts
        else:  # five fields (a free-text comment may hold '|')
            (job_id, task, state, reason, comment), shown = line.split("|", 4), ""
        row = (normalise_state(state), reason.strip(), tag_from_comment(comment.strip()))
        component = hetjob.split_key(shown)
        if component:
            het.setdefault(component[0], []).append((component[1], _fold(component[0], [row])))
            continue
        grouped.setdefault(job_id.strip(), []).append(row)
        if elements and task.strip().isdigit():
            element = f"{job_id.strip()}_{task.strip()}"
            single[element] = _fold(element, [row])
    return {**{job_id: _fold(job_id, rows) for job_id, rows in grouped.items()}, **hetjob.fold_statuses(het),
            **single}


#: squeue's %i: a job id, an array element (``123_4``, ``123_[5-9%2]``) or a hetjob component (``123+1``).
_SHOWN_ID_RE = re.compile(r"^\d{1,19}(?:\+\d{1,4}|_\S*)?\Z")


def _fold(job_id: str, rows: list[tuple[str, str, str | None]]) -> JobStatus:
    from airflow_provider_hpcai.slurm.states import Phase, phase_of

    tag = next((t for _, _, t in rows if t), None)
    for wanted in (Phase.ACTIVE, Phase.FAILED, Phase.UNKNOWN, Phase.SUCCEEDED):
        for state, reason, _ in rows:
            if phase_of(state) is wanted:
                return JobStatus(job_id=job_id, state=state, reason=reason if reason != "None" else "", tag=tag)
    return JobStatus(job_id=job_id, state="UNKNOWN", tag=tag)


def parse_slurm_seconds(text: str | None) -> float | None:
    """Seconds from Slurm's ``[D-]HH:MM:SS``, ``MM:SS.mmm`` or ``UNLIMITED``."""
    if not text or text in {"UNLIMITED", "Partition_Limit", "INVALID"}:
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    hours, minutes, seconds = parts[-3:]
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def parse_size_bytes(text: str | None) -> int | None:
    """Bytes from sacct sizes (``"1234K"``, ``"2G"``, ``"0"``; ReqMem's ``n``/``c`` suffix dropped)."""
    if not text:
        return None
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGTP]?)", text.strip())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _exit_parts(text: str) -> tuple[int | None, int | None]:
    if not text or ":" not in text:
        return None, None
    code, sig = text.split(":", 1)
    return int(code), int(sig)


_ELEMENT_RE = re.compile(r"^\d+_\d+\Z")
_HET_RE = re.compile(r"^\d+\+\d+\Z")


def parse_sacct(stdout: str, *, elements: bool = False) -> dict[str, dict[str, Any]]:
    """Group ``sacct --parsable2`` rows by job: the job record plus its ``steps``.

    Array tasks are folded into their array job; with ``elements``, each element that has run is
    a record of its own under ``<array id>_<index>`` instead (with its own steps). The components
    of a heterogeneous job (``123+0``, ``123+1``, steps ``123+0.batch``) are folded into one record
    under the leader's id (:func:`~airflow_provider_hpcai.slurm.hetjob.fold_records`).

    :return: ``{job_id: {"job_id", "state", "exit_code", "signal", "elapsed_seconds",
        "max_rss_bytes", "total_cpu_seconds", "node_list", "requested_memory_bytes",
        "time_limit_seconds", "alloc_cpus", "submit", "start", "end", "tag", "steps": [...]}}``
    """
    jobs: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = SACCT_FIELDS if line.count("|") >= len(SACCT_FIELDS) - 1 else _SACCT_FIELDS_BEFORE_EFFICIENCY
        values = line.split("|", len(fields) - 1)
        if len(values) < len(fields):
            continue
        row = dict(zip(fields, values, strict=True))
        full_id = row["JobID"]
        base, _, step = full_id.partition(".")
        own = elements and bool(_ELEMENT_RE.match(base))
        base = base if own or _HET_RE.match(base) else base.split("_")[0].split("+")[0]
        exit_code, signal = _exit_parts(row["ExitCode"])
        record = {
            "state": normalise_state(row["State"]),
            "exit_code": exit_code,
            "signal": signal,
            "elapsed_seconds": parse_slurm_seconds(row["Elapsed"]),
            "max_rss_bytes": parse_size_bytes(row["MaxRSS"]),
            "total_cpu_seconds": parse_slurm_seconds(row["TotalCPU"]),
            "node_list": row["NodeList"] if row["NodeList"] not in {"", "None assigned"} else None,
        }
        usage = parse_tres(row.get("TRESUsageInTot"))
        record["_gpu_usage"] = _gpu_usage(usage.get("gres/gpuutil"), parse_size_bytes(usage.get("gres/gpumem")))
        job = jobs.setdefault(base, {"job_id": base, "steps": []})
        if step:
            job["steps"].append({"step": step, **record})
            continue
        if "_" in full_id and not own:
            job.setdefault("array_tasks", []).append({"task": full_id, **record})
        if "state" not in job or "_" not in full_id or own:
            job.update(record)
            job.update(
                {
                    "name": row["JobName"],
                    "requested_memory_bytes": parse_size_bytes(row["ReqMem"]),
                    "time_limit_seconds": parse_slurm_seconds(row["Timelimit"]),
                    "alloc_cpus": int(row["AllocCPUS"]) if row["AllocCPUS"].isdigit() else None,
                    "submit": row["Submit"],
                    "start": row["Start"],
                    "end": row["End"],
                    "tag": tag_from_comment(row["Comment"]),
                    "_alloc": parse_tres(row.get("AllocTRES")),
                    "_energy": int(row["ConsumedEnergyRaw"]) if row.get("ConsumedEnergyRaw", "").isdigit() else None,
                }
            )
    for job in jobs.values():
        tasks = job.get("array_tasks")
        if tasks:  # an array is active while any task is, failed if any failed
            worst = worst_element(tasks)
            job.update({k: worst[k] for k in ("state", "exit_code", "signal")})
    for job in jobs.values():
        peaks = [s["max_rss_bytes"] for s in job["steps"] if s.get("max_rss_bytes")]
        if peaks:
            job["max_rss_bytes"] = max(peaks + [job.get("max_rss_bytes") or 0])
        cpu = [s["total_cpu_seconds"] for s in job["steps"] if s.get("total_cpu_seconds")]
        if cpu and not job.get("total_cpu_seconds"):
            job["total_cpu_seconds"] = sum(cpu)
        job_exit(job)  # "0:9" -> exit_code 137, signal 9: the meaning every transport shares
        alloc = job.pop("_alloc", None) or {}
        gpu = _max_gpu_usage([job.pop("_gpu_usage", None), *(s.pop("_gpu_usage", None) for s in job["steps"])])
        job["efficiency"] = efficiency(
            total_cpu_seconds=job.get("total_cpu_seconds"), elapsed_seconds=job.get("elapsed_seconds"),
            alloc_cpus=_int_or_none(alloc.get("cpu")) or job.get("alloc_cpus"), max_rss_bytes=job.get("max_rss_bytes"),
            alloc_memory_bytes=parse_size_bytes(alloc.get("mem")) or job.get("requested_memory_bytes"),
            gpus=_int_or_none(alloc.get("gres/gpu")) or 0, gpu_usage=gpu, energy_joules=job.pop("_energy", None))
        for task in job.get("array_tasks") or []:
            task.pop("_gpu_usage", None)
    return hetjob.fold_records(jobs)


def parse_tres(text: str | None) -> dict[str, str]:
    """``"cpu=2,mem=50M,gres/gpu=1"`` -> ``{"cpu": "2", "mem": "50M", "gres/gpu": "1"}``."""
    pairs = (item.split("=", 1) for item in (text or "").split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def _gpu_usage(util: Any, mem_bytes: int | None) -> dict[str, Any] | None:
    util_value = util if isinstance(util, (int, float)) else int(util) if isinstance(util, str) and util.isdigit() \
        else None
    if util_value is None and mem_bytes is None:
        return None
    return {"gpu_util_percent": util_value, "gpu_mem_bytes": mem_bytes}


def _max_gpu_usage(usages: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    found = [u for u in usages if u]
    if not found:
        return None
    return {key: max((u[key] for u in found if u.get(key) is not None), default=None)
            for key in ("gpu_util_percent", "gpu_mem_bytes")}


def parse_sinfo(stdout: str) -> list[dict[str, Any]]:
    """Nodes from :func:`sinfo_argv` output."""
    nodes = []
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        name, partition, state, cpus, memory, free = parts
        alloc, idle, _other, total = (int(x) if x.isdigit() else 0 for x in cpus.split("/"))
        nodes.append(
            {
                "name": name,
                "partition": partition.rstrip("*"),
                "state": state,
                "cpus_allocated": alloc,
                "cpus_idle": idle,
                "cpus_total": total,
                "memory_mb": int(memory) if memory.isdigit() else None,
                "free_memory_mb": int(free) if free.isdigit() else None,
            }
        )
    return nodes


def parse_partitions(stdout: str) -> dict[str, dict[str, Any]]:
    """Partition limits from ``scontrol show partition --oneliner``."""
    parts: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        name = fields.get("PartitionName")
        if not name:
            continue
        parts[name] = {
            "name": name,
            "max_time_seconds": parse_slurm_seconds(fields.get("MaxTime")),
            "default": fields.get("Default") == "YES",
            "state": fields.get("State"),
            "max_memory_per_node_mb": _int_or_none(fields.get("MaxMemPerNode")),
            "total_cpus": _int_or_none(fields.get("TotalCPUs")),
            "nodes": fields.get("Nodes"),
        }
    return parts


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def chunk(ids: Iterable[str], size: int = 500) -> list[list[str]]:
    """Split ids into groups that keep one command line well under ARG_MAX."""
    items = list(ids)
    return [items[i : i + size] for i in range(0, len(items), size)]
