"""The sbatch script, built by one pure function.

Every value that reaches the script is validated by :class:`~airflow_provider_hpcai.spec.JobSpec`
and :class:`~airflow_provider_hpcai.resources.Resources`, and is additionally shell-quoted.
``#SBATCH`` lines in the user's script cannot add directives: a command line ends the
directive block before the user's script starts (sbatch stops reading directives there).

A heterogeneous job (``JobSpec.components``) gets the job's own lines and het group 0's
resources first, then ``#SBATCH hetjob`` and each further group's resource lines: sbatch carries
the job-wide options (name, output, comment, ...) over to every group, and the script, which runs
in group 0, starts work in group ``N`` with ``srun --het-group=N``.
"""

from __future__ import annotations

import re
import shlex

from airflow_provider_hpcai.resources import Resources, format_duration, format_memory
from airflow_provider_hpcai.spec import JobSpec, check_path

__all__ = ["COMMENT_PREFIX", "build_sbatch_script", "component_directives", "output_paths", "sbatch_directives",
           "user_directives"]

COMMENT_PREFIX = "hpcai-tag="
_USER_DIRECTIVE_RE = re.compile(r"^\s*#SBATCH\b", re.MULTILINE)


def output_paths(workdir: str, array: bool = False) -> tuple[str, str]:
    """Where the job's stdout and stderr go (``%j`` is the job id, ``%A_%a`` for arrays)."""
    stem = "hpcai-%A_%a" if array else "hpcai-%j"
    return f"{workdir.rstrip('/')}/{stem}.out", f"{workdir.rstrip('/')}/{stem}.err"


def sbatch_directives(spec: JobSpec, workdir: str) -> list[tuple[str, str]]:
    """The ``(option, value)`` pairs the job is submitted with, in a stable order."""
    res = spec.resources
    out, err = output_paths(workdir, array=spec.array is not None)
    pairs: list[tuple[str, str]] = [
        ("job-name", spec.name),
        ("chdir", workdir),
        ("output", out),
        ("error", err),
    ]
    if spec.tag:
        pairs.append(("comment", COMMENT_PREFIX + spec.tag))
    pairs.append(("requeue" if spec.requeue else "no-requeue", ""))
    if spec.hold:
        pairs.append(("hold", ""))
    pairs += component_directives(res)  # group 0's resources, as every further group's
    for option, value in (("array", spec.array), ("exclude", spec.exclude_nodes), ("signal", spec.signal)):
        if value is not None:
            pairs.append((option, value))
    return pairs


def component_directives(res: Resources) -> list[tuple[str, str]]:
    """The resource ``(option, value)`` pairs of one group: group 0's in :func:`sbatch_directives`,
    each further group of a heterogeneous job after its ``#SBATCH hetjob`` line (job-wide options
    come from group 0 only)."""
    pairs: list[tuple[str, str]] = [
        ("nodes", str(res.nodes)),
        ("ntasks", str(res.ntasks)),
        ("cpus-per-task", str(res.cpus_per_task)),
    ]
    if res.memory_bytes is not None:
        pairs.append(("mem", format_memory(res.memory_bytes)))
    if res.gpu_count:
        pairs.append(("gres", f"gpu:{res.gpu_type}:{res.gpu_count}" if res.gpu_type else f"gpu:{res.gpu_count}"))
    if res.time_limit_seconds is not None:
        pairs.append(("time", format_duration(res.time_limit_seconds)))
    if res.time_min_seconds is not None:
        pairs.append(("time-min", format_duration(res.time_min_seconds)))
    for option, value in (
        ("partition", res.partition),
        ("account", res.account),
        ("qos", res.qos),
        ("constraint", res.constraint),
        ("reservation", res.reservation),
        ("ntasks-per-node", None if res.ntasks_per_node is None else str(res.ntasks_per_node)),
    ):
        if value is not None:
            pairs.append((option, value))
    if res.exclusive:
        pairs.append(("exclusive", ""))
    return pairs


def _lines(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"#SBATCH --{option}={shlex.quote(value)}" if value else f"#SBATCH --{option}" for option, value in pairs]


def user_directives(script: str) -> list[str]:
    """``#SBATCH`` lines found in the user's script (they are ignored; the caller warns)."""
    return [line.strip() for line in script.splitlines() if _USER_DIRECTIVE_RE.match(line)]


def build_sbatch_script(spec: JobSpec, workdir: str) -> str:
    """Build the complete batch script for ``spec``.

    :param spec: the job (with a ``container``, the user script runs in it:
        :func:`~airflow_provider_hpcai.containers.wrap.slurm_container_lines`).
    :param workdir: absolute working directory on the cluster (also where output goes).
    :return: the script text, starting with ``#!/bin/bash``.
    """
    check_path("workdir", workdir)
    lines = ["#!/bin/bash", *_lines(sbatch_directives(spec, workdir))]
    for component in spec.components:  # a heterogeneous job: het groups 1.. after group 0
        lines.append("#SBATCH hetjob")
        lines += _lines(component_directives(component))
    # The first command line ends sbatch's directive parsing: #SBATCH lines below are inert.
    lines.append(": hpcai-directives-end")
    for key, value in sorted(spec.environment.items()):
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append('echo "[hpcai] job ${SLURM_JOB_ID} on $(hostname) started $(date -u +%FT%TZ)"')
    if spec.container is not None:  # the user script runs in the image (lazy: a builder per runtime)
        from airflow_provider_hpcai.containers.wrap import slurm_container_lines

        lines += slurm_container_lines(spec.container, spec.script, workdir, name=spec.name,
                                       nodes=spec.resources.nodes, cpus=spec.resources.total_cpus,
                                       env_names=tuple(spec.environment))
        return "\n".join(lines) + "\n"
    lines.append("# ---- user script ----")
    lines.append(spec.script.rstrip("\n"))
    return "\n".join(lines) + "\n"
