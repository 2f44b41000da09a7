"""The one rule for copying a job's output into the task log, and the resume state that carries it.

Every backend serves its output as bytes from an offset (``read_output(ref, stream, offset,
limit)``); the waiting code, blocking or deferred, copies it with :func:`take_lines`:

* while the job runs, only whole lines are shown: a partial last line waits for its newline;
* once the job has ended (``final``), the rest is shown, a partial last line included;
* a full chunk without any newline (one enormous line) is shown as it is, so output never stalls;
* output is read in chunks of :data:`CHUNK_BYTES`, so memory stays bounded however large it grows;
  past ``[hpcai] log_output_cap`` bytes a stream is no longer copied: the rest stays on the
  cluster and the task log says where (:func:`output_cap`, :func:`cap_notice`).

What was shown is a :class:`ResumeState`: opaque to operators and triggers, JSON-safe, handed
from the trigger's event to the operator (and from one trigger to the next after a triggerer
restart), so each byte reaches the task log once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHUNK_BYTES", "OutputRestarted", "ResumeState", "cap_notice", "output_cap", "read_file_part",
           "take_lines"]

#: How much output one read asks for.
CHUNK_BYTES = 256 * 1024


def read_file_part(path: str, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of the file at ``path`` from ``offset`` (``b""`` when it does not exist yet).

    :raises PermissionError: the file exists but this process may not read it.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
    except FileNotFoundError:
        return b""


def output_cap() -> int:
    """``[hpcai] log_output_cap``: bytes of each stream copied into the task log (0: no cap).

    :raises ValueError: the option is negative or not a number.
    """
    from airflow_provider_hpcai import config

    raw = config.get("log_output_cap")
    try:
        cap = int(float(raw or 0))
    except ValueError:
        raise ValueError(f"[hpcai] log_output_cap must be a number of bytes, got {raw!r}") from None
    if cap < 0:
        raise ValueError(f"[hpcai] log_output_cap must be 0 (no cap) or a number of bytes, got {cap}")
    return cap


def cap_notice(stream: str, cap: int, where: str) -> str:
    """The task log's line when ``stream`` passes the cap: what was shown and where the rest is."""
    return (f"{stream} passed {cap} bytes ([hpcai] log_output_cap): the task log shows its first {cap} bytes; "
            f"the rest stays on the cluster in {where} (from byte {cap} on)")


class OutputRestarted(Exception):
    """A backend's answer to a read past the end of a stream that started over (a rotated log)."""


def take_lines(chunk: bytes, *, final: bool, limit: int = CHUNK_BYTES) -> tuple[int, list[str]]:
    """How many bytes of ``chunk`` to show now, and those bytes as lines.

    :param chunk: output read from the current offset (at most ``limit`` bytes).
    :param final: the job has ended: show a partial last line too.
    :param limit: the size of a full read (a full chunk with no newline is shown whole).
    """
    if final or len(chunk) >= limit:
        end = len(chunk)
    else:
        end = chunk.rfind(b"\n") + 1
    if end <= 0:
        return 0, []
    return end, chunk[:end].decode("utf-8", "replace").splitlines()


class ResumeState:
    """How much of each output stream was shown already (JSON-safe through :meth:`to_dict`).

    Streams are named by the backend (``stdout``/``stderr``; ``stdout@<pod>`` on Kubernetes,
    where a retried pod starts a new log). Operators and triggers never look inside.
    """

    def __init__(self, offsets: dict[str, int] | None = None, capped: list[str] | None = None) -> None:
        self.offsets: dict[str, int] = {str(k): int(v) for k, v in (offsets or {}).items()}
        #: Streams whose cap notice the task log has already shown.
        self.capped: list[str] = [str(s) for s in capped or []]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ResumeState:
        return cls((data or {}).get("offsets"), (data or {}).get("capped"))

    @classmethod
    def from_legacy(cls, offsets: dict[str, int] | None) -> ResumeState:
        """From the ``{"stdout": n, "stderr": m}`` offsets of earlier versions."""
        return cls({k: v for k, v in (offsets or {}).items() if v})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"offsets": dict(self.offsets)}
        if self.capped:
            out["capped"] = list(self.capped)
        return out

    def offset(self, stream: str) -> int:
        return self.offsets.get(stream, 0)

    def advance(self, stream: str, count: int) -> None:
        self.offsets[stream] = self.offset(stream) + count

    def restart(self, stream: str) -> None:
        """The stream started over (a rotated log): show it from its current start."""
        self.offsets[stream] = 0
        if stream in self.capped:
            self.capped.remove(stream)

    def legacy_offsets(self) -> dict[str, int]:
        """``stdout_offset``/``stderr_offset`` as earlier events carried them."""
        out = {"stdout": 0, "stderr": 0}
        for stream, count in self.offsets.items():
            base = stream.partition("@")[0]
            if base in out:
                out[base] = count
        return out
