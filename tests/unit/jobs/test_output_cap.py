"""Job output of hundreds of MB: streamed with bounded memory, capped in the task log, the rest left where it is."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hpcai.jobs.output import CHUNK_BYTES, ResumeState, output_cap, read_file_part
from airflow_provider_hpcai.jobs.ref import JobRef
from airflow_provider_hpcai.jobs.watch import BlockingAccess, copy_output

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[3]


def big_output(path: Path, size: int, head_lines: int = 20_000) -> None:
    """``size`` bytes of job output in a moment: real lines first, then a sparse hole, then a last line."""
    with open(path, "wb") as handle:
        handle.writelines(f"step {n:06d} residual=1.0e-03\n".encode() for n in range(head_lines))
        handle.truncate(size - 16)
        handle.seek(size - 16)
        handle.write(b"the very end 42\n")


class FileBackend:
    """A backend whose output lies in files on this machine (as the local and Slurm-over-local ones)."""

    name = "files"
    conn_id = None

    def output_streams(self, ref: JobRef) -> list[str]:
        return ["stdout", "stderr"]

    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        return read_file_part(ref.stdout_path if stream == "stdout" else ref.stderr_path, offset, limit)

    def output_label(self, ref: JobRef, stream: str) -> str:
        return f"{ref.job_id} {stream}"


class CountingLog:
    """A task log that keeps the warnings and counts what the info lines carried."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0
        self.warnings: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines += 1
        self.bytes += len(str(args[-1])) if args else len(msg)

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args if args else msg)


def _ref(tmp_path: Path) -> JobRef:
    (tmp_path / "err").write_bytes(b"")
    return JobRef("files", "77", None, str(tmp_path / "out"), str(tmp_path / "err"), {})


def test_a_300_mb_output_reaches_the_log_up_to_the_cap_and_the_log_says_where_the_rest_is(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__LOG_OUTPUT_CAP", str(2 * MIB))
    ref = _ref(tmp_path)
    big_output(Path(ref.stdout_path), 300 * MIB)
    access, log, resume = BlockingAccess(FileBackend()), CountingLog(), ResumeState()
    asyncio.run(copy_output(access, ref, resume, log, final=False))  # while it runs
    assert resume.offset("stdout") == 2 * MIB and 2 * MIB - log.lines <= log.bytes <= 2 * MIB  # newlines not counted
    assert len(log.warnings) == 1, log.warnings
    notice = log.warnings[0]
    assert "[77 stdout] stdout passed 2097152 bytes ([hpcai] log_output_cap)" in notice
    assert f"the rest stays on the cluster in {ref.stdout_path} (from byte 2097152 on)" in notice

    # Handed from the trigger to the operator (JSON), then the final copy: nothing more, no second notice.
    resume = ResumeState.from_dict(json.loads(json.dumps(resume.to_dict())))
    asyncio.run(copy_output(access, ref, resume, log, final=True))
    assert resume.offset("stdout") == 2 * MIB and len(log.warnings) == 1 and log.bytes <= 2 * MIB


def test_output_at_the_cap_and_no_further_gets_no_notice(tmp_path):
    ref = _ref(tmp_path)
    Path(ref.stdout_path).write_bytes(b"x" * 99 + b"\n")
    log = CountingLog()
    asyncio.run(copy_output(BlockingAccess(FileBackend()), ref, ResumeState(), log, final=True, cap=100))
    assert log.lines == 1 and log.warnings == []


def test_a_bad_cap_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__LOG_OUTPUT_CAP", "-5")
    with pytest.raises(ValueError, match="log_output_cap must be 0"):
        output_cap()
    monkeypatch.setenv("AIRFLOW__HPCAI__LOG_OUTPUT_CAP", "lots")
    with pytest.raises(ValueError, match="must be a number of bytes, got 'lots'"):
        output_cap()


_CHILD = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, sys.argv[3])
    from tests.unit.jobs.test_output_cap import FileBackend, CountingLog
    from airflow_provider_hpcai.jobs.ref import JobRef
    from airflow_provider_hpcai.jobs.output import ResumeState
    from airflow_provider_hpcai.jobs.watch import BlockingAccess, copy_output

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    ref = JobRef("files", "77", None, sys.argv[1], sys.argv[2], {})
    log, resume = CountingLog(), ResumeState()
    before = hwm()
    asyncio.run(copy_output(BlockingAccess(FileBackend()), ref, resume, log, final=True, cap=0))
    print(json.dumps({"before": before, "after": hwm(), "offset": resume.offset("stdout"), "bytes": log.bytes}))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for the peak RSS")
def test_uncapped_streaming_of_400_mb_keeps_memory_bounded(tmp_path):
    """No cap: all 400 MB pass through the log, the process's peak RSS grows by a few chunks at most."""
    ref = _ref(tmp_path)
    size = 400 * MIB
    big_output(Path(ref.stdout_path), size)
    proc = subprocess.run([sys.executable, "-c", _CHILD, ref.stdout_path, ref.stderr_path, str(ROOT)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["offset"] == size and found["bytes"] >= size - 20_000 * 2  # every byte went by (NULs as text)
    growth = found["after"] - found["before"]
    assert growth < 32 * CHUNK_BYTES, f"peak RSS grew by {growth / MIB:.1f} MiB while streaming {size // MIB} MiB"
