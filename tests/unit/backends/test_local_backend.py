"""The local backend runs real bash subprocesses (tiny ones): states, limits, output, reattach."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends import get_backend
from airflow_provider_hpcai.backends.base import JobRef
from airflow_provider_hpcai.backends.local import LIVE_RECORD, LocalBackend, ProcessSampler
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.outcome import failure_for
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.fakes.slurm import FakeSlurmTransport

PY = shlex.quote(sys.executable)
MIB = 1024**2


class RecordingLog:
    """A task log: keeps every line with the time it was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append((time.monotonic(), msg % args if args else msg))

    warning = error = debug = info

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def when(self, needle: str) -> float:
        return next(t for t, line in self.lines if needle in line)


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(base_dir=str(tmp_path), sample_interval=0.05, kill_grace_seconds=2)


def run(backend: LocalBackend, script: str, log: RecordingLog | None = None, **spec: Any) -> dict[str, Any]:
    resources = spec.pop("resources", Resources())
    job = JobSpec(name="t", script=script, resources=resources, **spec)
    ref = backend.submit(job)
    log = log or RecordingLog()
    status = backend.wait(ref, poll_interval=1, log=log)
    return backend.result(ref, state=status.state, exit_code=status.exit_code, requested=resources.to_dict(),
                          offsets=None, log=log)


def group_gone(pgid: int, within: float = 3.0) -> bool:
    """Whether no process of the group is left (killed orphans take a moment to be reaped by init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_registry_name_resolves_to_the_local_backend():
    assert isinstance(get_backend("local"), LocalBackend)
    assert LocalBackend.can_defer is False


def test_success_runs_in_the_job_folder_with_the_environment_passed_verbatim(backend, tmp_path):
    hostile = "a'b\"c $(touch pwned) `touch pwned2` ;exit 9"
    log = RecordingLog()
    result = run(backend, 'echo "value=[$VALUE] cwd=$(pwd) ntasks=$HPCAI_NTASKS"; echo to-stderr >&2', log,
                 environment={"VALUE": hostile}, resources=Resources(ntasks=2))
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0 and result["failure"] is None
    assert result["node_list"] == socket.gethostname()
    assert result["elapsed_seconds"] >= 0 and result["total_cpu_seconds"] is not None
    folder = Path(result["stdout_path"]).parent
    assert folder.parent == tmp_path
    assert f"value=[{hostile}] cwd={folder} ntasks=2" in log.text()  # streamed into the task log
    assert "to-stderr" in log.text() and "stderr] to-stderr" in log.text()
    assert not list(tmp_path.rglob("pwned*"))
    assert Path(result["stderr_path"]).read_text() == "to-stderr\n"


def test_non_zero_exit_is_failed_with_its_code_and_error_tail(backend):
    result = run(backend, "echo about to fail >&2; exit 3")
    assert (result["state"], result["exit_code"], result["failure"]) == ("FAILED", 3, "failed")
    error = failure_for(result, "about to fail")
    assert type(error) is exc.SlurmJobFailed and "exit code 3" in str(error)


def test_time_limit_ends_the_job_timeout(backend):
    started = time.monotonic()
    result = run(backend, "echo start; sleep 30", resources=Resources(time_limit=2))
    took = time.monotonic() - started
    assert result["state"] == "TIMEOUT" and result["failure"] == "timeout"
    assert 2 <= result["elapsed_seconds"] < 6 and took < 8
    assert "DUE TO TIME LIMIT" in Path(result["stderr_path"]).read_text()
    assert isinstance(failure_for(result), exc.SlurmJobTimeout)


def test_memory_past_the_limit_is_killed_out_of_memory(backend):
    hog = f"{PY} -c 'import time; x = b\"a\" * (300 * 1024 * 1024); time.sleep(20)'"
    started = time.monotonic()
    result = run(backend, hog, resources=Resources(memory="100M", time_limit=60))
    assert result["state"] == "OUT_OF_MEMORY" and result["failure"] == "oom"
    assert result["max_rss_bytes"] > 100 * MIB
    assert time.monotonic() - started < 15  # killed, not left to sleep
    assert "Exceeded job memory limit" in Path(result["stderr_path"]).read_text()
    assert isinstance(failure_for(result), exc.SlurmOutOfMemory)


def test_peak_memory_of_the_whole_tree_is_reported(backend):
    holder = f"{PY} -c 'import time; x = b\"a\" * (150 * 1024 * 1024); time.sleep(3)'"
    result = run(backend, f"{holder} & {holder} & wait", resources=Resources(memory="2G"))
    assert result["state"] == "COMPLETED"
    assert 300 * MIB <= result["max_rss_bytes"] < 1024 * MIB  # two processes of 150 MiB, summed (one alone: ~160)


def test_output_is_streamed_while_the_job_runs(backend):
    log = RecordingLog()
    run(backend, "echo first; sleep 1.5; printf 'last line without newline'", log)
    first, last = log.when("stdout] first"), log.when("last line without newline")
    assert last - first > 1.0  # the first line reached the log well before the job ended
    assert log.when("is COMPLETED") >= last - 0.5


def test_cancel_from_another_backend_kills_the_whole_group(backend, tmp_path):
    spec = JobSpec(name="t", script="sleep 60 & sleep 60; echo never")
    ref = backend.submit(spec)
    # on_kill builds a fresh backend: cancellation must work from its files alone
    threading.Timer(0.5, lambda: LocalBackend(base_dir=str(tmp_path), kill_grace_seconds=2).cancel(ref)).start()
    status = backend.wait(ref, poll_interval=1, log=RecordingLog())
    assert status.state == "CANCELLED"
    result = backend.result(ref, state=status.state, exit_code=status.exit_code, requested={}, offsets=None,
                            log=RecordingLog())
    assert result["failure"] == "cancelled" and "never" not in Path(result["stdout_path"]).read_text()
    assert group_gone(ref.extra["pid"])
    backend.cancel(ref)  # cancelling a finished job is a no-op
    assert backend.status(ref).state == "CANCELLED"


def test_background_processes_do_not_outlive_the_job(backend):
    result = run(backend, "sleep 60 & echo $! > bg.pid; echo done")
    pid = int((Path(result["stdout_path"]).parent / "bg.pid").read_text())
    assert result["state"] == "COMPLETED"
    deadline = time.monotonic() + 3
    while (seen := ProcessSampler().identity(pid)) is not None and not seen[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen is None or seen[1]  # gone (or a zombie waiting for init)


def test_a_new_worker_reattaches_to_a_live_job_by_tag(tmp_path):
    tag = make_tag("dag", "task", "run-1")
    first = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05)
    ref = first.submit(JobSpec(name="t", script="sleep 1; echo finished; exit 4", tag=tag))
    assert (tmp_path / tag / LIVE_RECORD).exists()
    second = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05)  # as after a worker crash
    found = second.find_live(tag)
    assert found is not None and found.job_id == ref.job_id and found.stdout_path == ref.stdout_path
    assert second.status(found).state == "RUNNING"
    log = RecordingLog()
    status = second.wait(found, poll_interval=1, log=log)  # not its child: the exit file tells the outcome
    assert (status.state, status.exit_code) == ("FAILED", 4)
    assert "finished" in log.text()
    assert second.find_live(tag) is None
    assert second.find_live(make_tag("dag", "other", "run-1")) is None


def test_status_of_an_unknown_job_is_none(backend, tmp_path):
    assert backend.status(JobRef("local", "nope", extra={"workdir": str(tmp_path)})) is None


def test_work_dir_comes_from_hpcai_config(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__HPCAI__LOCAL_WORK_DIR", str(tmp_path / "jobs"))
    ref = LocalBackend().submit(JobSpec(name="t", script="true"))
    assert Path(ref.extra["workdir"]).parent == tmp_path / "jobs"
    LocalBackend().wait(ref, poll_interval=0.05, log=RecordingLog())


def test_proc_sampler_agrees_with_psutil(tmp_path):
    backend = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05, sampler=ProcessSampler(use_psutil=False))
    ref = backend.submit(JobSpec(name="t", script=f"{PY} -c 'import time; x = b\"a\" * (80 * 1024 * 1024); "
                                                  "time.sleep(3)'"))
    pid = ref.extra["pid"]
    by_proc, by_psutil = ProcessSampler(use_psutil=False), ProcessSampler()
    deadline = time.monotonic() + 10
    while sum(r for r, _ in by_psutil.tree(pid).values()) < 80 * MIB and time.monotonic() < deadline:
        time.sleep(0.05)  # until the allocation happened (Python starts slowly on a busy machine)
    assert abs(by_proc.identity(pid)[0] - by_psutil.identity(pid)[0]) < 1.0
    rss_proc = sum(r for r, _ in by_proc.tree(pid).values())
    rss_psutil = sum(r for r, _ in by_psutil.tree(pid).values())
    assert rss_proc > 80 * MIB and abs(rss_proc - rss_psutil) < 20 * MIB
    status = backend.wait(ref, poll_interval=1, log=RecordingLog())
    assert status.state == "COMPLETED"


def test_proc_sampler_also_enforces_memory(tmp_path):
    backend = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05, kill_grace_seconds=1,
                           sampler=ProcessSampler(use_psutil=False))
    hog = f"{PY} -c 'import time; x = b\"a\" * (200 * 1024 * 1024); time.sleep(20)'"
    assert run(backend, hog, resources=Resources(memory="64M"))["state"] == "OUT_OF_MEMORY"


def test_sigterm_ignoring_jobs_are_killed_after_the_grace_period(backend):
    script = f"{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)'"
    started = time.monotonic()
    result = run(backend, script, resources=Resources(time_limit=1))
    assert result["state"] == "TIMEOUT" and time.monotonic() - started < 8


def test_result_has_the_same_keys_as_the_slurm_backend(backend):
    local = run(backend, "echo ok")
    fake = FakeSlurmTransport(auto_advance=True)
    slurm = SlurmBackend("slurm_default", hook=SlurmHook(transport=fake))
    spec = JobSpec(name="t", script="echo ok")
    ref = slurm.submit(spec, workdir="/scratch")
    status = slurm.wait(ref, poll_interval=0.001, log=RecordingLog())
    remote = slurm.result(ref, state=status.state, exit_code=status.exit_code, requested=spec.resources.to_dict(),
                          offsets=None, log=RecordingLog())
    assert set(local) == set(remote)
    assert local["transport"] == "subprocess" and local["backend"] == "local"


def test_job_arrays_are_refused_with_a_way_out(backend):
    with pytest.raises(exc.InvalidJobSpecError, match="no job arrays.*expand"):
        backend.submit(JobSpec(name="t", script="true", array="0-3"))


def test_result_without_wait_still_reports_the_outcome(backend):
    ref = backend.submit(JobSpec(name="t", script="exit 5"))
    time.sleep(0.5)
    result = backend.result(ref, state="UNKNOWN", exit_code=None, requested={}, offsets=None, log=RecordingLog())
    assert (result["state"], result["exit_code"], result["failure"]) == ("FAILED", 5, "failed")


def test_read_file_reads_job_files_and_empty_when_missing(backend, tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")
    assert backend.read_file(str(tmp_path / "f"), 2, 3) == b"234"
    assert backend.read_file(str(tmp_path / "missing")) == b""


def test_signal_group_never_targets_our_own_group():
    from airflow_provider_hpcai.backends.local import _signal_group

    _signal_group(0, signal.SIGTERM)  # would kill the test runner if not refused
    _signal_group(-1, signal.SIGTERM)
