"""The local backend: a job's script runs with bash as a subprocess of the worker.

Scheduler semantics without a scheduler: the job runs in its own process group (so it can be
killed whole), its time limit and memory limit are enforced the way Slurm's
``OverMemoryKill`` does it (by sampling the resident memory of the whole process tree, not by
``RLIMIT_AS``), and it ends in a Slurm state (``COMPLETED``, ``FAILED``, ``TIMEOUT``,
``OUT_OF_MEMORY``, ``CANCELLED``) so the operator classifies it like any other job.

Everything a later try needs is on disk in the job's folder
(``<workdir or [hpcai] local_work_dir or ~/.hpcai/local-jobs>/<tag or id>``): the script, the
output files, the job record (the "pid file" :meth:`LocalBackend.find_live` looks for), the
exit code written by a small bash wrapper, and the final record. A retry on the same host can
therefore reattach to a job whose worker died, and :meth:`LocalBackend.cancel` works from any
process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends.base import JobBackend, JobRef, SharedFileOutput
from airflow_provider_hpcai.exceptions import ConfigurationError, InvalidJobSpecError
from airflow_provider_hpcai.jobs.digest import submission_digest
from airflow_provider_hpcai.jobs.states import JobStatus
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["LIVE_RECORD", "LocalBackend", "ProcessSampler"]

_LOG = logging.getLogger(__name__)
#: The job record of the folder's current job (what :meth:`LocalBackend.find_live` reads).
LIVE_RECORD = "hpcai-local.json"
#: Runs the script and records its exit status even when the worker that started it is gone.
_WRAPPER = 'bash "$1"; rc=$?; printf "%s\\n" "$rc" > "$2.tmp" && mv -f "$2.tmp" "$2"; exit "$rc"'
_TAIL_BYTES = 4096


# ---------------------------------------------------------------------- process sampling
class ProcessSampler:
    """Resident memory, CPU time and identity of a process tree (psutil, else ``/proc``).

    :param use_psutil: use psutil when it is importable (``False``: read ``/proc`` directly).
    """

    def __init__(self, use_psutil: bool = True) -> None:
        self._psutil: Any = None
        if use_psutil:
            try:
                import psutil

                self._psutil = psutil
            except ImportError:
                pass
        if self._psutil is None and not os.path.isdir("/proc/self"):
            raise ConfigurationError("the local backend needs psutil or a /proc filesystem to watch jobs")
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._boot: float | None = None

    def identity(self, pid: int) -> tuple[float, bool] | None:
        """``(create_time, is_zombie)`` of ``pid``, or ``None`` when it does not exist."""
        if self._psutil is not None:
            try:
                proc = self._psutil.Process(pid)
                return proc.create_time(), proc.status() == self._psutil.STATUS_ZOMBIE
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                return None
        stat = self._stat(pid)
        if stat is None:
            return None
        return self._boot_time() + int(stat[19]) / self._ticks, stat[0] in ("Z", "X")

    def tree(self, root: int) -> dict[int, tuple[int, float]]:
        """``{pid: (rss_bytes, cpu_seconds)}`` for ``root`` and all its descendants."""
        if self._psutil is not None:
            ps = self._psutil
            try:
                top = ps.Process(root)
                procs = [top, *top.children(recursive=True)]
            except (ps.NoSuchProcess, ps.AccessDenied):
                return {}
            found: dict[int, tuple[int, float]] = {}
            for proc in procs:
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        found[proc.pid] = (proc.memory_info().rss, cpu.user + cpu.system)
                except (ps.NoSuchProcess, ps.AccessDenied):
                    continue
            return found
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = self._stat(int(entry))
                if stat is not None:
                    stats[int(entry)] = stat
        members, frontier = {root}, [root]
        while frontier:
            parent = frontier.pop()
            for pid, stat in stats.items():
                if int(stat[1]) == parent and pid not in members:
                    members.add(pid)
                    frontier.append(pid)
        return {pid: (int(stats[pid][21]) * self._page, (int(stats[pid][11]) + int(stats[pid][12])) / self._ticks)
                for pid in members if pid in stats}

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        """Fields 3.. of ``/proc/<pid>/stat`` (index 0 is the state), or ``None``."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rfind(")") + 2:].split()

    def _boot_time(self) -> float:
        if self._boot is None:
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("btime "):
                    self._boot = float(line.split()[1])
        return self._boot or 0.0


# ---------------------------------------------------------------------- job files
class _Job:
    """The files of one local job."""

    def __init__(self, workdir: Path, job_id: str) -> None:
        self.workdir, self.job_id = workdir, job_id
        stem = workdir / f"hpcai-{job_id}"
        self.script, self.stdout, self.stderr = Path(f"{stem}.sh"), Path(f"{stem}.out"), Path(f"{stem}.err")
        self.record_path, self.exit_path, self.final_path = (Path(f"{stem}.json"), Path(f"{stem}.exit"),
                                                              Path(f"{stem}.final.json"))

    def record(self) -> dict[str, Any] | None:
        return _read_json(self.record_path)

    def final(self) -> dict[str, Any] | None:
        return _read_json(self.final_path)

    def exit_code(self) -> int | None:
        try:
            return int(self.exit_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def note(self, text: str) -> None:
        """Append a scheduler notice to the job's error output (as slurmstepd does)."""
        with self.stderr.open("a") as handle:
            handle.write(f"hpcai-local: {text}\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _signal_group(pgid: int, sig: int) -> None:
    if pgid <= 1:  # never our own group (0) or every process (-1)
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------- the backend
class LocalBackend(SharedFileOutput, JobBackend):
    """Runs jobs as bash subprocesses of the worker, with Slurm's limits and states.

    :param conn_id: unused (the local machine needs no connection).
    :param base_dir: where job folders go (default ``[hpcai] local_work_dir``, else
        ``~/.hpcai/local-jobs``); a task's ``workdir`` overrides it.
    :param sample_interval: seconds between memory samples and output copies.
    :param kill_grace_seconds: seconds between SIGTERM and SIGKILL when a job is stopped.
    :param sampler: the process sampler (tests: ``ProcessSampler(use_psutil=False)``).
    """

    name = "local"
    can_defer = False  # the job is a child of the worker: nothing else can watch it
    shares_worker_environment = True
    schedules_gpus = False  # the job sees the machine's GPUs

    def __init__(self, conn_id: str | None = None, *, base_dir: str | None = None, sample_interval: float = 0.2,
                 kill_grace_seconds: float = 10.0, sampler: ProcessSampler | None = None, **options: Any) -> None:
        super().__init__(conn_id, **options)
        self.base_dir = base_dir
        self.sample_interval = sample_interval
        self.kill_grace_seconds = kill_grace_seconds
        self.sampler = sampler or ProcessSampler()
        self.host = socket.gethostname()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._usage: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ paths
    def _base(self, workdir: str | None) -> Path:
        from airflow_provider_hpcai.spec import check_path

        chosen = os.path.expanduser(workdir or self.base_dir or config.get("local_work_dir") or "~/.hpcai/local-jobs")
        return Path(check_path("workdir", chosen))

    def _job(self, ref: JobRef) -> _Job:
        workdir = ref.extra.get("workdir")
        if not workdir:
            raise ConfigurationError(f"local job {ref.job_id} has no workdir in its reference; it cannot be found")
        return _Job(Path(workdir), ref.job_id)

    def _ref(self, job: _Job, tag: str | None, pid: int) -> JobRef:
        return JobRef(self.name, job.job_id, tag, str(job.stdout), str(job.stderr),
                      {"workdir": str(job.workdir), "pid": pid, "host": self.host})

    # ------------------------------------------------------------------ contract
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        self.check_components(spec)
        if spec.array is not None:
            raise InvalidJobSpecError(f"job {spec.name}: the local backend runs no job arrays ({spec.array!r}); "
                                      "map the task with expand() instead, or use the slurm backend")
        job_id = uuid.uuid4().hex[:12]
        folder = self._base(workdir or spec.workdir) / (spec.tag or job_id)
        folder.mkdir(parents=True, exist_ok=True)
        job = _Job(folder, job_id)
        res = spec.resources
        if res.total_cpus > (os.cpu_count() or 1):
            _LOG.warning("Job %s asks for %d CPUs; this machine has %s: it will be oversubscribed",
                         spec.name, res.total_cpus, os.cpu_count())
        job_env = {**spec.environment, "HPCAI_JOB_ID": job_id, "HPCAI_NTASKS": str(res.ntasks),
                   "HPCAI_CPUS_PER_TASK": str(res.cpus_per_task), "HPCAI_WORKDIR": str(folder)}
        env = {**os.environ, **job_env}
        if spec.container is None:
            job.script.write_text(spec.script)
        else:  # the script runs in the image: runc (bundles) or podman, with the job's folder mounted
            env.update(spec.container.env)
            job.script.write_text(self._container_launcher(spec, job, {**job_env, **spec.container.env}))
        with job.stdout.open("ab") as out, job.stderr.open("ab") as err:
            proc = subprocess.Popen(
                ["bash", "-c", _WRAPPER, "hpcai-local", str(job.script), str(job.exit_path)],
                cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            )
        started = time.time()
        identity = self.sampler.identity(proc.pid)
        record = {"job_id": job_id, "name": spec.name, "tag": spec.tag, "pid": proc.pid, "host": self.host,
                  "create_time": identity[0] if identity else started, "started": started,
                  "time_limit": res.time_limit_seconds, "memory_limit": res.memory_bytes,
                  "digest": spec.digest or submission_digest(spec)}
        _write_json(job.record_path, record)
        _write_json(folder / LIVE_RECORD, record)
        self._children[job_id] = proc
        _LOG.info("Started local job %s (%s) as process group %d in %s", job_id, spec.name, proc.pid, folder)
        ref = self._ref(job, spec.tag, proc.pid)
        ref.extra["digest"] = record["digest"]
        return ref

    def _container_launcher(self, spec: JobSpec, job: _Job, env: dict[str, str]) -> str:
        """Write the user script beside the job's and return the script that runs it in ``spec.container``."""
        import sys

        from airflow_provider_hpcai.containers.local import local_job_launcher, local_runtime
        from airflow_provider_hpcai.containers.wrap import job_container

        assert spec.container is not None
        runtime = local_runtime(spec.container)
        inner = job.script.with_name(job.script.stem + ".inner.sh")
        inner.write_text(spec.script)
        # The folder of all jobs under this base is mounted (as on Slurm, where jobs share a workdir: a
        # later stage reads an earlier one's output), and the job's own folder is the working directory.
        container = job_container(spec.container, str(job.workdir.parent))
        if spec.container.workdir is None:
            container = container.replace(workdir=str(job.workdir))
        return local_job_launcher(container, runtime=runtime,
                                  job_id=job.job_id, folder=str(job.workdir), script=str(inner), env=env,
                                  python=sys.executable)

    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        record = _read_json(self._base(workdir) / tag / LIVE_RECORD)
        if not record or record.get("host") != self.host:
            return None
        job = _Job(self._base(workdir) / tag, str(record["job_id"]))
        if job.final() is not None or job.exit_code() is not None or not self._alive(record):
            return None
        ref = self._ref(job, tag, int(record["pid"]))
        ref.extra["digest"] = record.get("digest")
        return ref

    def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        """One look at each job: enforce its limits, finish its records once it ended."""
        found: dict[str, JobStatus | None] = {}
        for ref in refs:
            job = self._job(ref)
            found[ref.job_id] = None if job.record() is None else self._poll(job)
        return found

    def poll_bounds(self, poll_interval: float) -> tuple[float, float]:
        """The job's limits are enforced at each look: look every ``sample_interval``, never slower."""
        tick = max(0.02, min(poll_interval, self.sample_interval))
        return tick, tick

    def describe(self, ref: JobRef) -> str:
        return f"Local job {ref.job_id}"

    def result_extra(self, ref: JobRef) -> dict[str, Any]:
        job = self._job(ref)
        return {"backend": self.name, "transport": "subprocess", "tag": ref.tag, "stdout_path": str(job.stdout),
                "stderr_path": str(job.stderr)}

    def accounting(self, ref: JobRef, status: JobStatus) -> dict[str, Any]:
        job = self._job(ref)
        final = job.final()
        if final is None or "elapsed_seconds" not in final:  # nobody watched it to the end: look once more
            if job.record() is not None:
                self._poll(job)
            final = job.final()
        final = final or {}
        accounting = {key: final.get(key) for key in ("state", "exit_code", "signal", "elapsed_seconds",
                                                      "max_rss_bytes", "total_cpu_seconds")}
        accounting["node_list"] = final.get("host") or self.host
        return accounting

    def cancel(self, ref: JobRef) -> None:
        """Stop the job (SIGTERM, then SIGKILL after the grace period); state ``CANCELLED``."""
        job = self._job(ref)
        record = job.record()
        final = job.final()
        if record is None or job.exit_code() is not None or (final is not None and "elapsed_seconds" in final):
            return  # unknown, or already over
        if final is None:
            self._stop(job, record, "CANCELLED", "job cancelled")
        else:  # already being stopped (time or memory limit): make sure it ends, keep its reason
            _signal_group(int(record["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_seconds
        while self._alive(record) and time.monotonic() < deadline:
            self._reap(job.job_id)
            time.sleep(0.05)
        _signal_group(int(record["pid"]), signal.SIGKILL)
        self._reap(job.job_id)
        if (job.workdir / f".hpcai-ct-{job.job_id}").exists():
            # The wrapper's trap stops the container (runc kill); on a loaded machine the grace can
            # run out first, and a container's processes are not in the wrapper's process group.
            from airflow_provider_hpcai.containers.local import cleanup_local_job

            cleanup_local_job(job.workdir, job.job_id)

    # ------------------------------------------------------------------ watching
    def _alive(self, record: dict[str, Any]) -> bool:
        """Whether the job's wrapper process still runs (and is the one we started)."""
        seen = self.sampler.identity(int(record["pid"]))
        if seen is None or seen[1]:
            return False
        return abs(seen[0] - float(record.get("create_time") or 0)) < 2.0

    def _reap(self, job_id: str) -> tuple[int, Any] | None:
        """Collect our own child's exit (``(status, rusage)``) once it ended; ``None`` otherwise."""
        usage = self._usage.setdefault(job_id, {})
        if "wait_status" in usage:
            return usage["wait_status"], usage.get("rusage")
        proc = self._children.get(job_id)
        if proc is None:
            return None
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
            # Exited, not yet reaped: its pid (= the group id) cannot be reused, so killing the
            # group's stragglers (as Slurm does at job end) cannot hit another process.
            _signal_group(proc.pid, signal.SIGKILL)
            _, wait_status, rusage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            return None
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        usage["wait_status"], usage["rusage"] = wait_status, rusage
        return wait_status, rusage

    def _sample(self, job: _Job, record: dict[str, Any]) -> int:
        """Sample the tree's memory and CPU; return its current resident memory."""
        usage = self._usage.setdefault(job.job_id, {})
        tree = self.sampler.tree(int(record["pid"]))
        rss = sum(r for r, _ in tree.values())
        usage["peak"] = max(usage.get("peak", 0), rss)
        cpu = usage.setdefault("cpu", {})
        for pid, (_, seconds) in tree.items():
            cpu[pid] = max(cpu.get(pid, 0.0), seconds)
        return rss

    def _poll(self, job: _Job) -> JobStatus:
        """One look at the job: enforce its limits, finish its records once it ended."""
        record = job.record() or {}
        final = job.final()
        reaped = self._reap(job.job_id)
        running = reaped is None and self._alive(record)
        if running:
            rss = self._sample(job, record)
            if final is None:
                final = self._enforce(job, record, rss)
            if final is not None:  # being stopped: escalate to SIGKILL past the grace period
                if time.time() - float(final.get("stop_requested") or 0) > self.kill_grace_seconds:
                    _signal_group(int(record["pid"]), signal.SIGKILL)
                return JobStatus(job.job_id, "COMPLETING", final["state"], tag=record.get("tag"))
            return JobStatus(job.job_id, "RUNNING", tag=record.get("tag"))
        if final is None or "elapsed_seconds" not in final:
            final = self._finish(job, record, final, reaped)
        return JobStatus(job.job_id, final["state"], final.get("reason", ""), final.get("exit_code"),
                         record.get("tag"))

    def _enforce(self, job: _Job, record: dict[str, Any], rss: int) -> dict[str, Any] | None:
        limit, memory = record.get("time_limit"), record.get("memory_limit")
        elapsed = time.time() - float(record["started"])
        if limit and elapsed > limit:
            return self._stop(job, record, "TIMEOUT", f"job {job.job_id} CANCELLED DUE TO TIME LIMIT ({limit} s)")
        if memory and rss > memory:
            return self._stop(job, record, "OUT_OF_MEMORY",
                              f"Exceeded job memory limit: job {job.job_id} used {rss // 2**20} MiB, "
                              f"more than the {memory // 2**20} MiB it asked for, and was killed")
        return None

    def _stop(self, job: _Job, record: dict[str, Any], state: str, note: str) -> dict[str, Any]:
        final = {"state": state, "reason": note, "stop_requested": time.time()}
        _write_json(job.final_path, final)
        job.note(note)
        _signal_group(int(record["pid"]), signal.SIGTERM)
        return final

    def _finish(self, job: _Job, record: dict[str, Any], stopped: dict[str, Any] | None,
                reaped: tuple[int, Any] | None) -> dict[str, Any]:
        """Write the final record of a job whose wrapper has exited."""
        if (job.workdir / f".hpcai-ct-{job.job_id}").exists():  # a containerised job: finish its clean-up
            from airflow_provider_hpcai.containers.local import cleanup_local_job

            cleanup_local_job(job.workdir, job.job_id)
        code, sig = job.exit_code(), None
        if reaped is not None:
            exitcode = os.waitstatus_to_exitcode(reaped[0])
            code, sig = (code if code is not None else exitcode, None) if exitcode >= 0 else (None, -exitcode)
        if stopped is not None:
            state = stopped["state"]
        elif code == 0:
            state = "COMPLETED"
        else:
            state = "FAILED"
        if code is not None and code > 128 and sig is None and stopped is not None:
            code, sig = None, code - 128  # the script's shell reported the signal that stopped it
        usage = self._usage.get(job.job_id, {})
        peak = usage.get("peak") or 0
        cpu = sum(usage.get("cpu", {}).values()) or None
        if reaped is not None and reaped[1] is not None:
            rusage = reaped[1]
            peak = max(peak, int(rusage.ru_maxrss) * 1024)  # ru_maxrss: the largest process, in KiB
            cpu = max(cpu or 0.0, rusage.ru_utime + rusage.ru_stime)  # killed trees leave children unreaped
        try:
            ended = job.exit_path.stat().st_mtime
        except OSError:
            ended = time.time()
        final = {**(stopped or {}), "state": state, "exit_code": code, "signal": sig, "host": record.get("host"),
                 "elapsed_seconds": round(max(0.0, ended - float(record.get("started") or ended)), 3),
                 "max_rss_bytes": peak or None, "total_cpu_seconds": None if cpu is None else round(cpu, 3)}
        _write_json(job.final_path, final)
        return final
