"""Grid Engine (SGE / Son of Grid Engine 8.1) commands as argv lists, and their answers as the shared job states.

Pure functions, string-tested: :func:`qsub_argv` builds the submission (every value validated
or passed as its own argument, never through a shell), :func:`parse_qstat_xml` reads
``qstat -xml`` and :func:`parse_qacct` reads ``qacct -j``; :data:`QSTAT_STATE` and
:func:`final_state` translate Grid Engine's words into the shared vocabulary
(:mod:`airflow_provider_hpcai.jobs.states`).
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["QSTAT_STATE", "final_state", "job_script", "parse_qacct", "parse_qstat_xml", "qsub_argv"]

#: ``qstat`` state letters -> the shared state (the first matching rule wins; E: error, d: deleting).
QSTAT_STATE: tuple[tuple[str, str], ...] = (
    ("E", "FAILED"),  # Eqw: the job hit an error before it ran and waits for an administrator
    ("d", "COMPLETING"),
    ("s", "SUSPENDED"), ("S", "SUSPENDED"), ("T", "SUSPENDED"),
    ("r", "RUNNING"), ("t", "RUNNING"), ("R", "RUNNING"),
    ("h", "PENDING"), ("q", "PENDING"), ("w", "PENDING"),
)
_JOB_ID_RE = re.compile(r"^[0-9]+\Z")


def check_job_id(job_id: str) -> str:
    """A Grid Engine job id (digits), or a clear error."""
    if not _JOB_ID_RE.match(str(job_id)):
        raise InvalidJobSpecError(f"{job_id!r} is not a Grid Engine job id (digits only)")
    return str(job_id)


def job_script(spec: JobSpec) -> str:
    """The batch script: the environment exported (quoted), then the user's script."""
    lines = ["#!/bin/bash"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(spec.environment.items())]
    return "\n".join([*lines, spec.script, ""])


def qsub_argv(spec: JobSpec, *, script_path: str, stdout_path: str, stderr_path: str, workdir: str,
              queue: str | None = None) -> list[str]:
    """``qsub`` for ``spec``: the job is named by its tag (how :meth:`find_live` finds it again)."""
    res = spec.resources
    if spec.array is not None:
        raise InvalidJobSpecError(f"job {spec.name}: the gridengine backend runs no job arrays; map the task instead")
    argv = ["qsub", "-terse", "-N", spec.tag or spec.name, "-o", stdout_path, "-e", stderr_path,
            "-wd", workdir, "-S", "/bin/bash"]
    if res.time_limit_seconds:
        argv += ["-l", f"h_rt={int(res.time_limit_seconds)}"]
    if res.memory_bytes:
        per_slot = max(1, res.memory_bytes // max(1, res.cpus_per_task * res.ntasks))
        argv += ["-l", f"h_vmem={per_slot}"]
    if res.total_cpus > 1:
        argv += ["-pe", "make", str(res.total_cpus)]
    if queue:
        argv += ["-q", queue]
    return [*argv, script_path]


def parse_qstat_xml(text: str) -> dict[str, dict[str, str]]:
    """``qstat -xml -u '*'``: ``{job_id: {"name", "state", "owner"}}`` of every queued or running job."""
    found: dict[str, dict[str, str]] = {}
    if not text.strip():
        return found
    for job in ET.fromstring(text).iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        if number:
            found[number] = {"name": (job.findtext("JB_name") or "").strip(),
                             "state": (job.findtext("state") or "").strip(),
                             "owner": (job.findtext("JB_owner") or "").strip()}
    return found


def live_state(letters: str) -> str:
    """The shared state of a job ``qstat`` still lists (``qw``, ``r``, ``Eqw``, ``dr``...)."""
    for letter, state in QSTAT_STATE:
        if letter in letters:
            return state
    return "PENDING"


def parse_qacct(text: str) -> dict[str, str]:
    """``qacct -j <id>``: the last record's fields (a re-run job has several; the last is the newest)."""
    records: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("====="):
            records.append({})
            continue
        key, _, value = line.partition(" ")
        if key and records:
            records[-1][key] = value.strip()
    return records[-1] if records else {}


def _seconds(value: str | None) -> float | None:
    match = re.match(r"^\s*([0-9.]+)", value or "")
    return float(match.group(1)) if match else None


def _bytes(value: str | None) -> int | None:
    match = re.match(r"^\s*([0-9.]+)\s*([KMGT]?)B?", value or "")
    if not match:
        return None
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " "))


def final_state(record: dict[str, str], *, time_limit: float | None = None,
                memory_limit: int | None = None) -> tuple[str, int | None, str]:
    """``(state, exit_code, reason)`` of a finished job from its ``qacct`` record.

    ``failed`` says who ended the job: 0 the script itself (its ``exit_status``), 37 qmaster
    enforcing a limit (``h_rt``: TIMEOUT, ``h_vmem``: OUT_OF_MEMORY), 100 a signal after it
    started (``qdel``: CANCELLED), others a failure before the job ran (FAILED).
    """
    failed_text = record.get("failed", "0")
    failed = int(_seconds(failed_text) or 0)
    exit_status = int(_seconds(record.get("exit_status")) or 0)
    reason = failed_text.partition(":")[2].strip()
    if failed == 0:
        return ("COMPLETED" if exit_status == 0 else "FAILED"), exit_status, ""
    if failed == 37:
        wall, peak = _seconds(record.get("ru_wallclock")), _bytes(record.get("maxvmem"))
        if memory_limit and peak and peak >= 0.9 * memory_limit and not (time_limit and wall and wall >= time_limit):
            return "OUT_OF_MEMORY", exit_status, reason
        return "TIMEOUT", exit_status, reason
    if failed == 100:
        return "CANCELLED", exit_status, reason or "the job was killed (qdel)"
    return "FAILED", exit_status, reason


def accounting_record(record: dict[str, str], state: str, exit_code: int | None) -> dict[str, Any]:
    """The shared accounting fields of a ``qacct`` record."""
    return {"state": state, "exit_code": exit_code, "elapsed_seconds": _seconds(record.get("ru_wallclock")),
            "max_rss_bytes": _bytes(record.get("maxrss")) or _bytes(record.get("maxvmem")) or None,
            "total_cpu_seconds": _seconds(record.get("cpu")), "node_list": record.get("hostname") or None}
