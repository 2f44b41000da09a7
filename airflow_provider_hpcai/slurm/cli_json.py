"""``squeue --json`` and ``sacct --json`` read through the slurmrestd parsers.

The commands print their records with the data_parser plugin that slurmrestd answers with
(24.11.5: ``data_parser/v0.0.42``; 26.05.3: ``data_parser/v0.0.45``; recorded in
``tests/fixtures/slurm_cli_json/``), so :func:`rest_api.parse_jobs` and
:func:`rest_api.parse_db_job` give the CLI transport the same states, exit codes, signals,
reasons, efficiency and array elements as the REST transport. Everything here is pure: the
transport runs the argv (:func:`commands.squeue_json_argv`, :func:`commands.sacct_json_argv`)
and hands the text over.

Slurm 22.05 keeps the text parsers: its ``squeue --json`` ignores ``--jobs``, ``--states`` and
``--me`` and lists every job the controller holds (checked on 22.05.8), in the v0.0.38 shapes.
23.02 to 24.05 were not checked here and keep them too (:data:`JSON_SINCE`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.states import JobStatus, worst_element
from airflow_provider_hpcai.slurm.transport import is_transient

__all__ = [
    "JSON_SINCE",
    "data_parser_version",
    "fold_array_records",
    "load",
    "parse_sacct_json",
    "parse_squeue_json",
    "uses_json",
]

#: The first Slurm release whose ``squeue --json``/``sacct --json`` the CLI transport reads (24.11.5
#: and 26.05.3 verified: filters honoured, v0.0.42/v0.0.45 records). Older releases use the text parsers.
JSON_SINCE = (24, 11)
#: The oldest data parser whose shapes :mod:`rest_api` reads for the CLI (v0.0.38 is 22.05's).
_OLDEST_PARSER = (0, 0, 40)
_PARSER_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
_ELEMENT_RE = re.compile(r"^(\d+)_(\d+)\Z")
#: The fields of each element an array's folded accounting record lists (as the text parser does).
_TASK_FIELDS = ("state", "exit_code", "signal", "elapsed_seconds", "max_rss_bytes", "total_cpu_seconds", "node_list")


def uses_json(version: tuple[int, int] | None) -> bool:
    """Whether a Slurm of ``version`` (from ``squeue --version``) is read as JSON; ``None``: no."""
    return version is not None and tuple(version) >= JSON_SINCE


def data_parser_version(payload: dict[str, Any]) -> str | None:
    """The data parser a ``--json`` answer names in ``meta`` (``"v0.0.42"``); ``None`` if it names none.

    24.11+ print ``meta.plugin.data_parser`` (``"data_parser/v0.0.42"``); 22.05 prints only
    ``meta.plugin.type`` (``"openapi/v0.0.38"``).
    """
    meta = payload.get("meta")
    plugin = meta.get("plugin") or meta.get("plugins") if isinstance(meta, dict) else None
    if not isinstance(plugin, dict):
        return None
    for key in ("data_parser", "type"):
        found = _PARSER_RE.search(str(plugin.get(key) or ""))
        if found:
            return found.group(0)
    return None


def load(text: str, command: str) -> dict[str, Any]:
    """The decoded answer of a ``--json`` command, checked.

    :param text: what the command printed.
    :param command: the command line, for the error.
    :raises TransportError: when it is not a JSON object with a ``jobs`` list, when it carries
        errors, or when its data parser is older than v0.0.40 (such output is read as text instead).
    """
    try:
        payload = json.loads(text)
    except ValueError as err:
        raise TransportError(f"{command.split()[0]} printed no JSON ({err}); is this a Slurm of "
                             f"{'.'.join(map(str, JSON_SINCE))} or newer?", command=command,
                             stdout=text[:2000]) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("jobs"), list):
        raise TransportError(f"{command.split()[0]} --json printed no 'jobs' list", command=command,
                             stdout=text[:2000])
    errors = rest_api.api_errors(payload)
    if errors:  # e.g. slurmdbd unreachable: an outage to ride out, as the text commands' stderr says
        message = "; ".join(errors)
        raise TransportError(f"{command.split()[0]} --json reported: {message}", command=command,
                             stdout=text[:2000], retryable=is_transient(message))
    parser = data_parser_version(payload)
    numbers = tuple(int(n) for n in parser[1:].split(".")) if parser else None
    if numbers is not None and numbers < _OLDEST_PARSER:
        raise TransportError(f"{command.split()[0]} --json speaks {parser}; the CLI transport reads v0.0.40 "
                             "and newer as JSON and older Slurm releases as text", command=command)
    return payload


def parse_squeue_json(text: str, *, elements: bool = False, command: str = "squeue --json") -> dict[str, JobStatus]:
    """``squeue --json`` -> statuses keyed by job id, exactly as :func:`rest_api.parse_jobs` reads ``/jobs``.

    :param elements: list each array element too, under ``<array id>_<index>``.
    """
    return rest_api.parse_jobs(load(text, command), elements=elements)


def parse_sacct_json(text: str, *, elements: bool = False, command: str = "sacct --json") -> dict[str, dict[str, Any]]:
    """``sacct --json`` -> accounting records in :func:`commands.parse_sacct`'s shape.

    Each record is :func:`rest_api.parse_db_job`'s. Array elements are folded into their array
    job (:func:`fold_array_records`) as the text parser folds them; with ``elements`` each element
    is a record of its own under ``<array id>_<index>`` instead, as over REST.
    """
    records = rest_api.parse_db_job(load(text, command), elements=True)
    return records if elements else fold_array_records(records)


def fold_array_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fold the ``<array id>_<index>`` records into one record per array job.

    The array's record is its worst element's (active before failed before unknown before
    succeeded; the lowest index among equals: the first failed element names the exit code), under
    the array id, with ``array_tasks``: each element's ``task`` id, state, exit code, signal and
    usage, in index order. Other records are returned unchanged.
    """
    out: dict[str, dict[str, Any]] = {}
    arrays: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for key, record in records.items():
        found = _ELEMENT_RE.match(key)
        if found:
            arrays.setdefault(found.group(1), []).append((int(found.group(2)), key, record))
        else:
            out[key] = record
    for array_id, tasks in arrays.items():
        if array_id in out:  # the elements not yet started: one record under the array id, listed last
            tasks.append((1 << 31, array_id, out[array_id]))
        tasks.sort(key=lambda t: t[0])
        worst = worst_element([record for _, _, record in tasks])
        out[array_id] = {**worst, "job_id": array_id,
                         "array_tasks": [{"task": key, **{f: rec.get(f) for f in _TASK_FIELDS}} for _, key, rec in tasks]}
    return out
