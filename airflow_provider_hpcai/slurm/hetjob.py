"""Heterogeneous jobs (``#SBATCH hetjob``) seen as the one job the provider submitted.

Slurm gives each component of a hetjob a job record of its own: the leader ``123`` (het group 0,
where the batch script runs) and ``124``, ``125`` ... for groups 1, 2 ..., all sharing
``het_job_id`` 123 and shown as ``123+0``, ``123+1`` by squeue and sacct. The provider submitted one
job and asks about ``123``; the functions here fold the components into that one answer, the same
way for every transport (squeue and sacct text, ``--json``, slurmrestd):

- state: active while any component is; else failed if any failed, with the state of the most
  telling failure (:data:`FAILURE_ORDER`: a node failure or out-of-memory over a time limit over a
  plain failure over a cancellation, which is what the other components get when one fails);
  else the leader's. A component whose step was killed over the component's own memory request
  counts as ``OUT_OF_MEMORY``: Slurm ends every group with the script's state (``FAILED``) and
  records the kill only on the step (22.05.8: step ``CANCELLED``, ``0:9``, peak above the request);
  ``het_components`` keeps the states as Slurm recorded them;
- exit code and signal: the leader's (its batch step: the script's own exit status);
- accounting: CPU time, allocated CPUs, memory and GPUs, and energy summed over the components,
  the peak RSS and the elapsed time the largest of them, the nodes joined; every step kept with
  the ``het_group`` it ran in; ``het_components`` lists each component's own figures. The
  efficiency's ``cpu_percent`` is over the whole allocation, its ``memory_percent`` that of the
  component nearest its memory limit (the one that would be killed first).

Pure functions; nothing here runs a command.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_hpcai.slurm.states import JobStatus, Phase, phase_of
from airflow_provider_hpcai.slurm.usage import efficiency

__all__ = ["FAILURE_ORDER", "component_key", "fold_records", "fold_statuses", "groups_that_failed", "split_key"]

#: Failed states, most telling first: the folded hetjob takes the first any component has.
FAILURE_ORDER = ("NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "FAILED",
                 "REVOKED", "CANCELLED")
_KEY_RE = re.compile(r"^(\d{1,19})\+(\d{1,4})\Z")
_PHASE_ORDER = {Phase.ACTIVE: 0, Phase.FAILED: 1, Phase.UNKNOWN: 2, Phase.SUCCEEDED: 3}
#: A group whose peak reached this share of its own memory request ran out of memory.
NEAR_MEMORY_LIMIT = 0.9
#: The per-component figures listed under ``het_components``.
_COMPONENT_FIELDS = ("state", "exit_code", "signal", "elapsed_seconds", "max_rss_bytes", "total_cpu_seconds",
                     "node_list", "alloc_cpus", "requested_memory_bytes", "efficiency")


def component_key(het_job_id: Any, offset: Any) -> str | None:
    """``"123+1"`` for a component of hetjob 123 (``None`` when the record is no hetjob's)."""
    if isinstance(het_job_id, int) and het_job_id > 0 and isinstance(offset, int) and offset >= 0:
        return f"{het_job_id}+{offset}"
    return None


def split_key(key: str) -> tuple[str, int] | None:
    """``"123+1"`` -> ``("123", 1)``; ``None`` for any other id."""
    found = _KEY_RE.match(key.strip())
    return (found.group(1), int(found.group(2))) if found else None


def _rank(state: str | None) -> tuple[int, int]:
    base = str(state or "UNKNOWN")
    failure = FAILURE_ORDER.index(base) if base in FAILURE_ORDER else len(FAILURE_ORDER)
    return _PHASE_ORDER[phase_of(base)], failure


def fold_statuses(components: dict[str, list[tuple[int, JobStatus]]]) -> dict[str, JobStatus]:
    """One status per hetjob from its components' ``(het group, status)`` pairs, keyed by the leader's id."""
    folded: dict[str, JobStatus] = {}
    for job_id, rows in components.items():
        rows = sorted(rows, key=lambda r: r[0])
        worst = min(rows, key=lambda r: (*_rank(r[1].state), r[0]))[1]
        leader = rows[0][1]
        tag = next((s.tag for _, s in rows if s.tag), None)
        folded[job_id] = JobStatus(job_id, worst.state, worst.reason, leader.exit_code, tag)
    return folded


def fold_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fold accounting records keyed ``<het id>+<group>`` into one record per hetjob (see the module).

    Records of other jobs are returned unchanged. The records are :func:`commands.parse_sacct`'s
    shape, each already complete (exit code meaning, efficiency) for its own component.
    """
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for key, record in records.items():
        found = split_key(key)
        if found:
            groups.setdefault(found[0], []).append((found[1], record))
        else:
            out[key] = record
    for het_id, parts in groups.items():
        out.pop(het_id, None)  # a provisional record under the bare id beside the components: they win
        parts.sort(key=lambda p: p[0])
        leader = parts[0][1]
        states = [(group, "OUT_OF_MEMORY" if _killed_for_memory(rec) else rec.get("state")) for group, rec in parts]
        worst_state = min(states, key=lambda p: (*_rank(p[1]), p[0]))[1]
        steps = [{**step, "het_group": group} for group, rec in parts for step in rec.get("steps") or []]
        effs = [rec.get("efficiency") or {} for _, rec in parts]
        record = {
            **leader,
            "job_id": het_id,
            "state": worst_state,
            "steps": steps,
            "elapsed_seconds": _max(rec.get("elapsed_seconds") for _, rec in parts),
            "max_rss_bytes": _max(rec.get("max_rss_bytes") for _, rec in parts),
            "total_cpu_seconds": _sum(rec.get("total_cpu_seconds") for _, rec in parts),
            "alloc_cpus": _sum(rec.get("alloc_cpus") for _, rec in parts),
            "requested_memory_bytes": _sum(rec.get("requested_memory_bytes") for _, rec in parts),
            "node_list": ",".join(dict.fromkeys(n for _, rec in parts for n in [rec.get("node_list")] if n)) or None,
            "het_components": [{"het_group": group, "job_id": str(rec.get("job_id")),
                                **{f: rec.get(f) for f in _COMPONENT_FIELDS}} for group, rec in parts],
        }
        cpu_seconds, elapsed, cpus = record["total_cpu_seconds"], record["elapsed_seconds"], record["alloc_cpus"]
        folded_eff = efficiency(total_cpu_seconds=cpu_seconds, elapsed_seconds=elapsed, alloc_cpus=cpus,
                                max_rss_bytes=None, alloc_memory_bytes=None,
                                gpus=_sum(e.get("gpus") for e in effs) or 0,
                                gpu_usage=_max_usage([e.get("gpu_usage") for e in effs]),
                                energy_joules=_sum(e.get("consumed_energy_joules") for e in effs))
        folded_eff["memory_percent"] = _max(e.get("memory_percent") for e in effs)
        record["efficiency"] = folded_eff
        out[het_id] = record
    return out


def groups_that_failed(result: dict[str, Any] | None, failure: str, groups: int) -> list[int]:
    """The het groups a retry after ``failure`` should give more: those that ran out of it.

    ``"oom"``: the groups Slurm recorded ``OUT_OF_MEMORY`` or whose peak reached 90 % of the group's
    own memory request (the task result keeps no steps; Slurm ends every group ``FAILED``, so the
    peak is what tells them apart: 22.05.8 recorded 413 MiB against 32 MiB for the killed group,
    21 MiB against 64 MiB for the other); ``"timeout"``: the groups recorded
    ``TIMEOUT``. When the result does not say which (no ``het_components``, or none matches), every
    group: a retry that grows too much costs a little, one that grows the wrong group fails again.

    :param result: the failed try's result (its ``het_components``).
    :param failure: ``"oom"`` or ``"timeout"``.
    :param groups: how many groups the job has (group 0 plus its components).
    """
    wanted = {"oom": "OUT_OF_MEMORY", "timeout": "TIMEOUT"}[failure]
    found = []
    for comp in (result or {}).get("het_components") or []:
        group, peak, asked = comp.get("het_group"), comp.get("max_rss_bytes"), comp.get("requested_memory_bytes")
        if not isinstance(group, int) or not 0 <= group < groups:
            continue
        near = isinstance(peak, int) and isinstance(asked, int) and asked > 0 and peak >= NEAR_MEMORY_LIMIT * asked
        if comp.get("state") == wanted or (failure == "oom" and near):
            found.append(group)
    return sorted(set(found)) or list(range(groups))


def _killed_for_memory(record: dict[str, Any]) -> bool:
    """Whether a step of this component was killed (SIGKILL: signal 9 or exit 137) with its peak at 90 % or
    more of the component's own memory request. A step cancelled by a time limit (SIGTERM) is not."""
    if phase_of(record.get("state")) is not Phase.FAILED:
        return False
    limit = record.get("requested_memory_bytes")
    if not isinstance(limit, int) or limit <= 0:
        return False
    return any((step.get("max_rss_bytes") or 0) >= NEAR_MEMORY_LIMIT * limit
               and (step.get("signal") == 9 or step.get("exit_code") == 137)
               for step in record.get("steps") or [])


def _sum(values: Any) -> Any:
    found = [v for v in values if isinstance(v, (int, float))]
    return sum(found) if found else None


def _max(values: Any) -> Any:
    found = [v for v in values if isinstance(v, (int, float))]
    return max(found) if found else None


def _max_usage(usages: list[Any]) -> dict[str, Any] | None:
    found = [u for u in usages if isinstance(u, dict)]
    if not found:
        return None
    return {key: _max(u.get(key) for u in found) for key in ("gpu_util_percent", "gpu_mem_bytes")}
