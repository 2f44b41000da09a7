"""The end of a job's error output, for failure messages and classification, even when it is huge."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.backends import base
from airflow_provider_hpcai.backends.base import JobRef
from airflow_provider_hpcai.backends.slurm import SlurmBackend


class _Output(SlurmBackend):
    """A backend whose streams are byte strings; it counts the reads."""

    def __init__(self, streams: dict[str, bytes]) -> None:
        self.streams, self.reads = streams, 0

    def output_streams(self, ref: JobRef) -> list[str]:
        return ["stdout", "stderr"]

    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        self.reads += 1
        return self.streams[stream][offset:offset + limit]


@pytest.mark.parametrize("size", [10, base._HEAD_BYTES - 1, base._HEAD_BYTES, base._HEAD_BYTES + 1,
                                  2 * base._HEAD_BYTES + 12345])
def test_the_tail_is_the_end_of_the_stream_whatever_its_size(size: int) -> None:
    end = b"\nslurmstepd: error: Detected 1 oom_kill event\n"
    stderr = b"x" * max(0, size - len(end)) + end
    backend = _Output({"stdout": b"", "stderr": stderr})
    tail = backend.error_tail(JobRef(backend="slurm", job_id="1"), max_bytes=100)
    assert tail.endswith("oom_kill event\n") and len(tail) == min(100, len(stderr))
    assert backend.reads <= 3 + 2 * max(1, len(stderr)).bit_length()  # probes, not a read of the whole file
