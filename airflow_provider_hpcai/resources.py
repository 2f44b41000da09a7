"""What a job asks the scheduler for, independent of where it runs.

:class:`Resources` is pure data: it is validated once, on construction, and every
backend (Slurm, Kubernetes, the local machine) translates it into its own terms.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import timedelta
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_MEMORY_BYTES",
    "Resources",
    "format_duration",
    "format_memory",
    "parse_duration",
    "parse_memory",
]

#: Longest memory or time string looked at (``"1048576.5 GiB"`` fits); longer text is refused
#: before any pattern runs, so no input can make parsing slow.
MAX_TEXT_LENGTH = 32
#: Largest memory per node accepted: 1 PiB (the biggest single-system-image machines hold tens of TiB).
MAX_MEMORY_BYTES = 1024**5
#: Longest duration accepted: 365 days (Slurm's ``MaxTime`` is far shorter on real clusters).
MAX_DURATION_SECONDS = 365 * 86400

# Applied to stripped text of at most MAX_TEXT_LENGTH characters. Each part is bounded and the
# parts cannot match the same characters, so matching is linear (no backtracking between them).
_MEM_RE = re.compile(r"^(\d{1,30}(?:\.\d{1,30})?)\s*([KMGT]?)(?:iB|i|B)?\Z", re.IGNORECASE)
_MEM_UNITS = {"": 1024**2, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# Slurm time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_DUR_RE = re.compile(r"^(?:(\d{1,6})-)?(\d{1,9})(?::(\d{1,9}))?(?::(\d{1,9}))?\Z")
# Names that end up in #SBATCH lines or Kubernetes labels: a conservative charset.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")
_CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.\-&|\[\]*,:()!]{1,256}\Z")
_GPU_RE = re.compile(r"^(?:[A-Za-z0-9_\-]{1,64}:)?\d{1,4}\Z")


def parse_memory(value: str | int | None) -> int | None:
    """Parse a memory amount into bytes.

    Integers are bytes. Strings follow Slurm: a bare number is MiB, and the suffixes
    K, M, G, T (optionally followed by ``i``/``B``) are binary multiples.

    :param value: e.g. ``"4G"``, ``"512M"``, ``"1.5GiB"``, ``2048`` (bytes).
    :return: bytes, or ``None`` when ``value`` is ``None``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidJobSpecError(f"memory must be a size like '4G', not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise InvalidJobSpecError(f"memory must be positive, got {value} bytes")
        return _check_memory_ceiling(value, value)
    if not isinstance(value, str):
        raise InvalidJobSpecError(f"memory must be a size like '4G', not {type(value).__name__}")
    text = value.strip()
    match = _MEM_RE.match(text) if len(text) <= MAX_TEXT_LENGTH else None
    if not match:
        raise InvalidJobSpecError(
            f"memory {_shown(value)} is not a size; use a number with K, M, G or T (for example '4G' or '512M')"
        )
    amount = float(match.group(1)) * _MEM_UNITS[match.group(2).upper()]
    if amount < 1024**2:
        raise InvalidJobSpecError(f"memory {value!r} is below 1M, the smallest amount Slurm accepts")
    return _check_memory_ceiling(int(amount), value)


def _check_memory_ceiling(num_bytes: int, value: object) -> int:
    if num_bytes > MAX_MEMORY_BYTES:
        raise InvalidJobSpecError(
            f"memory {_shown(value)} is more than {MAX_MEMORY_BYTES // 1024**4}T per node, more than any node has; "
            "ask for the memory one node of your partition offers (for example '64G')"
        )
    return num_bytes


def _shown(value: object) -> str:
    """``repr(value)``, cut short so an error message stays readable whatever the input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"...' ({len(str(value))} characters)"


def format_memory(num_bytes: int) -> str:
    """Format bytes as a whole number of MiB with Slurm's ``M`` suffix (rounded up)."""
    return f"{-(-num_bytes // 1024**2)}M"


def parse_duration(value: timedelta | str | float | None) -> int | None:
    """Parse a duration into whole seconds (rounded up).

    :param value: a :class:`~datetime.timedelta`, seconds as a number, or a Slurm time string
        (``"MM"``, ``"HH:MM:SS"``, ``"D-HH:MM:SS"``...).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidJobSpecError(f"a duration cannot be {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_slurm_time(value)
    else:
        raise InvalidJobSpecError(f"a duration must be a timedelta or 'HH:MM:SS', not {type(value).__name__}")
    if math.isnan(seconds) or seconds <= 0:
        raise InvalidJobSpecError(f"a duration must be positive, got {_shown(value)}")
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidJobSpecError(
            f"duration {_shown(value)} is longer than {MAX_DURATION_SECONDS // 86400} days; "
            "ask for the time the job needs (for example '2-00:00:00' for two days)"
        )
    return int(-(-seconds // 1))


def _parse_slurm_time(text: str) -> float:
    stripped = text.strip()
    match = _DUR_RE.match(stripped) if len(stripped) <= MAX_TEXT_LENGTH else None
    if not match:
        raise InvalidJobSpecError(
            f"duration {_shown(text)} is not a Slurm time; use 'HH:MM:SS', 'MM', or 'D-HH:MM:SS'"
        )
    days, a, b, c = match.groups()
    parts = [int(p) for p in (a, b, c) if p is not None]
    if days is not None:
        # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, secs = (parts + [0, 0])[:3]
        return int(days) * 86400 + hours * 3600 + minutes * 60 + secs
    if len(parts) == 1:
        return parts[0] * 60  # MM
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]  # MM:SS
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def format_duration(seconds: int) -> str:
    """Format seconds as Slurm's ``D-HH:MM:SS`` (or ``HH:MM:SS`` under a day)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hms = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hms}" if days else hms


def _check_name(field: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidJobSpecError(
            f"{field} {value!r} is not allowed: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )


def _check_count(field: str, value: int | None, minimum: int = 1, maximum: int = 1_000_000) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidJobSpecError(f"{field} must be a whole number from {minimum} to {maximum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Resources:
    """Resources one job asks for.

    :param nodes: number of nodes.
    :param ntasks: number of tasks (MPI ranks) in all.
    :param cpus_per_task: CPU cores per task.
    :param memory: memory per node, e.g. ``"4G"`` (a bare number is MiB), or bytes as an int.
    :param gpus: GPUs per node: a count, or ``"type:count"`` (e.g. ``"a100:2"``).
    :param time_limit: hard wall-time limit (timedelta, seconds, or ``"HH:MM:SS"``).
    :param time_min: the least wall time the job can use (Slurm ``--time-min``); lets the
        backfill scheduler start it earlier with a shorter limit.
    :param partition: Slurm partition (queue).
    :param account: account to charge.
    :param qos: quality of service.
    :param constraint: node feature constraint.
    :param ntasks_per_node: the most tasks (MPI ranks) on one node (Slurm ``--ntasks-per-node``;
        on Kubernetes the MPI slots per worker pod). ``None``: the scheduler spreads them.
    :param exclusive: the job's nodes run nothing else (Slurm ``--exclusive``; Slurm only).
    :param reservation: run inside this Slurm advance reservation (Slurm only).
    """

    nodes: int = 1
    ntasks: int = 1
    cpus_per_task: int = 1
    memory: str | int | None = None
    gpus: int | str | None = None
    time_limit: timedelta | str | int | None = None
    time_min: timedelta | str | int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    ntasks_per_node: int | None = None
    exclusive: bool = False
    reservation: str | None = None

    def __post_init__(self) -> None:
        _check_count("nodes", self.nodes, maximum=100_000)
        _check_count("ntasks", self.ntasks)
        _check_count("cpus_per_task", self.cpus_per_task, maximum=4096)
        if self.ntasks < self.nodes:
            raise InvalidJobSpecError(f"ntasks ({self.ntasks}) must be at least nodes ({self.nodes})")
        parse_memory(self.memory)
        self._gpu_parts()
        limit = parse_duration(self.time_limit)
        minimum = parse_duration(self.time_min)
        if limit is not None and minimum is not None and minimum > limit:
            raise InvalidJobSpecError(f"time_min ({self.time_min}) is longer than time_limit ({self.time_limit})")
        for field in ("partition", "account", "qos", "reservation"):
            _check_name(field, getattr(self, field))
        if self.ntasks_per_node is not None:
            _check_count("ntasks_per_node", self.ntasks_per_node, maximum=65_536)
            if self.ntasks > self.nodes * self.ntasks_per_node:
                raise InvalidJobSpecError(
                    f"ntasks ({self.ntasks}) do not fit on {self.nodes} node(s) at ntasks_per_node="
                    f"{self.ntasks_per_node}: ask for more nodes or more tasks per node")
        if not isinstance(self.exclusive, bool):
            raise InvalidJobSpecError(f"exclusive must be true or false, not {self.exclusive!r}")
        if self.constraint is not None and (
            not isinstance(self.constraint, str) or not _CONSTRAINT_RE.match(self.constraint)
        ):
            raise InvalidJobSpecError(
                f"constraint {self.constraint!r} is not allowed: use feature names joined by & | , [ ] *"
            )

    def _gpu_parts(self) -> tuple[str | None, int]:
        if self.gpus is None:
            return None, 0
        if isinstance(self.gpus, bool):
            raise InvalidJobSpecError(f"gpus must be a count or 'type:count', not {self.gpus!r}")
        if isinstance(self.gpus, int):
            _check_count("gpus", self.gpus, minimum=0, maximum=1024)
            return None, self.gpus
        if isinstance(self.gpus, str) and _GPU_RE.match(self.gpus):
            kind, _, count = self.gpus.rpartition(":")
            return (kind or None), int(count)
        raise InvalidJobSpecError(f"gpus {self.gpus!r} is not allowed: use a count (2) or 'type:count' ('a100:2')")

    # ----------------------------------------------------------------- derived values
    @property
    def memory_bytes(self) -> int | None:
        """Memory per node in bytes, or ``None`` when not requested."""
        return parse_memory(self.memory)

    @property
    def time_limit_seconds(self) -> int | None:
        """The wall-time limit in seconds, or ``None`` when not requested."""
        return parse_duration(self.time_limit)

    @property
    def time_min_seconds(self) -> int | None:
        """The minimum wall time in seconds, or ``None``."""
        return parse_duration(self.time_min)

    @property
    def gpu_count(self) -> int:
        """GPUs per node (0 when none)."""
        return self._gpu_parts()[1]

    @property
    def gpu_type(self) -> str | None:
        """GPU model from ``"type:count"``, or ``None``."""
        return self._gpu_parts()[0]

    @property
    def total_cpus(self) -> int:
        """CPU cores over all tasks."""
        return self.ntasks * self.cpus_per_task

    # ----------------------------------------------------------------- (de)serialisation
    def replace(self, **changes: Any) -> Resources:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Primitive form (JSON-safe): durations as seconds, memory as bytes."""
        return {
            "nodes": self.nodes,
            "ntasks": self.ntasks,
            "cpus_per_task": self.cpus_per_task,
            "memory": self.memory_bytes,
            "gpus": self.gpus,
            "time_limit": self.time_limit_seconds,
            "time_min": self.time_min_seconds,
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            # Newer fields appear only when set, so results recorded before them compare equal.
            **({"ntasks_per_node": self.ntasks_per_node} if self.ntasks_per_node is not None else {}),
            **({"exclusive": True} if self.exclusive else {}),
            **({"reservation": self.reservation} if self.reservation is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resources:
        """Build from :meth:`to_dict` output or a user-written mapping; unknown keys are errors."""
        if data is None:
            return cls()
        if isinstance(data, Resources):
            return data
        if not isinstance(data, dict):
            raise InvalidJobSpecError(f"resources must be a mapping, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidJobSpecError(f"unknown resource fields {unknown}; allowed: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if v is not None})
