"""Standard Workload Format (SWF) reader.

The Parallel Workloads Archive stores job logs in SWF: ``;``-prefixed header comments
(``; MaxProcs: 100``), then one job per line with 18 whitespace-separated numeric fields,
``-1`` meaning *unknown*. :func:`parse_swf` yields typed :class:`SwfRecord` objects (unknown
values become ``None``) and counts the lines it had to skip; :func:`swf_arrays` gives the
same data as numpy columns for fast, vectorised evaluation.

Field order (https://www.cs.huji.ac.il/labs/parallel/workload/swf.html)::

    1 job number            7 used memory (KB)         13 group id
    2 submit time (s)       8 requested processors     14 executable (application) number
    3 wait time (s)         9 requested time (s)       15 queue number
    4 run time (s)         10 requested memory (KB)    16 partition number
    5 allocated processors 11 status (1 ok, 0 failed, 5 cancelled)   17 preceding job
    6 average CPU time     12 user id                  18 think time
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["SWF_FIELDS", "SwfRecord", "SwfTrace", "parse_swf", "read_swf", "swf_arrays"]

log = logging.getLogger(__name__)

SWF_FIELDS: tuple[str, ...] = (
    "job_id",
    "submit_time",
    "wait_time",
    "run_time",
    "allocated_processors",
    "average_cpu_time",
    "used_memory_kb",
    "requested_processors",
    "requested_time",
    "requested_memory_kb",
    "status",
    "user_id",
    "group_id",
    "executable",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
)
_FLOAT_FIELDS = {"average_cpu_time", "used_memory_kb", "requested_memory_kb"}
_STATUS_NAMES = {0: "FAILED", 1: "COMPLETED", 2: "PARTIAL", 3: "PARTIAL_LAST", 4: "PARTIAL_FAILED", 5: "CANCELLED"}


@dataclasses.dataclass(frozen=True, slots=True)
class SwfRecord:
    """One job line of an SWF file; ``None`` wherever the log says ``-1`` (unknown)."""

    job_id: int
    submit_time: int | None
    wait_time: int | None
    run_time: int | None
    allocated_processors: int | None
    average_cpu_time: float | None
    used_memory_kb: float | None
    requested_processors: int | None
    requested_time: int | None
    requested_memory_kb: float | None
    status: int | None
    user_id: int | None
    group_id: int | None
    executable: int | None
    queue: int | None
    partition: int | None
    preceding_job: int | None
    think_time: int | None

    @property
    def processors(self) -> int | None:
        """Processors the job asked for, or those it was given when the request is unknown."""
        return self.requested_processors or self.allocated_processors

    @property
    def state(self) -> str:
        """The status as a Slurm-like state name (``COMPLETED``, ``FAILED``, ``CANCELLED``...)."""
        return _STATUS_NAMES.get(self.status if self.status is not None else -1, "UNKNOWN")


@dataclasses.dataclass
class SwfTrace:
    """A parsed SWF log: its header, its records and how many lines were skipped.

    :param header: header keys to values; a key seen more than once (``Partition``) maps to a list.
    :param records: the job records, in file order.
    :param skipped: number of malformed lines that were skipped.
    :param skipped_lines: line numbers of the first skipped lines (at most 20), for error messages.
    """

    header: dict[str, Any]
    records: list[SwfRecord]
    skipped: int = 0
    skipped_lines: list[int] = dataclasses.field(default_factory=list)

    @property
    def max_processors(self) -> int | None:
        """The machine size from ``MaxProcs`` (or ``MaxNodes``), when the header gives it."""
        for key in ("MaxProcs", "MaxNodes"):
            value = self.header.get(key)
            if isinstance(value, str) and value.strip().isdigit():
                return int(value)
        return None


def _parse_header_line(text: str, header: dict[str, Any]) -> None:
    body = text.lstrip(";").strip()
    key, sep, value = body.partition(":")
    if not sep or not key.strip() or " " in key.strip():
        return  # a free-text comment line, not "Key: value"
    key, value = key.strip(), value.strip()
    if key in header:
        previous = header[key]
        header[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
    else:
        header[key] = value


def _parse_record(fields: list[str]) -> SwfRecord:
    values: list[Any] = []
    for name, raw in zip(SWF_FIELDS, fields):
        number = float(raw)
        if math.isnan(number):
            raise ValueError("NaN")
        if number == -1:
            values.append(None)
        elif name in _FLOAT_FIELDS:
            values.append(number)
        else:
            values.append(int(number))
    if values[0] is None:
        raise ValueError("job number is unknown")
    return SwfRecord(*values)


def parse_swf(lines: Iterable[str]) -> SwfTrace:
    """Parse SWF text line by line.

    Header comments (``; Key: value``) fill :attr:`SwfTrace.header`; a job line with other
    than 18 fields, or a field that is not a number, is skipped and counted.

    :param lines: the file's lines (an open file, or ``text.splitlines()``).
    """
    header: dict[str, Any] = {}
    records: list[SwfRecord] = []
    skipped = 0
    skipped_lines: list[int] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith(";"):
            _parse_header_line(text, header)
            continue
        fields = text.split()
        try:
            if len(fields) != len(SWF_FIELDS):
                raise ValueError(f"{len(fields)} fields")
            records.append(_parse_record(fields))
        except ValueError:
            skipped += 1
            if len(skipped_lines) < 20:
                skipped_lines.append(number)
    if skipped:
        log.warning("skipped %d malformed SWF line(s), first at line(s) %s", skipped, skipped_lines[:5])
    return SwfTrace(header=header, records=records, skipped=skipped, skipped_lines=skipped_lines)


GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is gzip-compressed: by its magic bytes, else by its ``.gz`` suffix."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    if len(head) == 2:
        return head == GZIP_MAGIC
    return os.fspath(path).endswith(".gz")


def read_swf(path: str | os.PathLike[str]) -> SwfTrace:
    """Read an SWF file, plain text or gzip-compressed (``.swf.gz``), from ``path``.

    Compression is recognised by the gzip magic bytes (a ``.gz`` suffix on a file that is not
    gzip is read as plain text); the file is decompressed line by line while it is parsed, never
    held whole in memory.

    :raises InvalidJobSpecError: when the file is missing, with the path it looked at, or when
        a gzip file is truncated or corrupt.
    """
    if not os.path.isfile(path):
        raise InvalidJobSpecError(
            f"SWF trace {os.fspath(path)!r} does not exist; pass the path of a .swf or .swf.gz file "
            "(e.g. from the Parallel Workloads Archive)"
        )
    if _is_gzip(path):
        import gzip
        import zlib

        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
                return parse_swf(handle)
        except (OSError, EOFError, zlib.error) as err:
            raise InvalidJobSpecError(f"SWF trace {os.fspath(path)!r} is not a readable gzip file: {err}") from err
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse_swf(handle)


def swf_arrays(trace: SwfTrace) -> dict[str, Any]:
    """The trace's records as numpy columns (float64), ``-1`` where unknown.

    Column names are :data:`SWF_FIELDS`.
    """
    import numpy as np

    n = len(trace.records)
    table = np.full((n, len(SWF_FIELDS)), -1.0)
    for i, record in enumerate(trace.records):
        table[i] = [(-1.0 if v is None else v) for v in (getattr(record, f) for f in SWF_FIELDS)]
    return {name: table[:, j] for j, name in enumerate(SWF_FIELDS)}


def iter_valid(trace: SwfTrace) -> Iterator[SwfRecord]:
    """Records usable for runtime prediction: known submit time, run time, processors and request."""
    for record in trace.records:
        if (
            record.submit_time is not None
            and record.run_time
            and record.processors
            and record.requested_time
        ):
            yield record
