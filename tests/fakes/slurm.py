"""A stateful in-memory Slurm cluster behind the :class:`SlurmTransport` seam.

:class:`FakeSlurmTransport` keeps jobs the way slurmctld and slurmdbd would: each submission
gets the next job id, starts ``PENDING``, becomes ``RUNNING`` and then ends in the outcome
scripted for it (:func:`outcome`). Accounting, node and partition answers are rendered as the
real commands print them (``sacct --parsable2``, ``sinfo``, ``scontrol show partition``) and
parsed with the provider's own parsers, so the records have exactly the production shape.

The same cluster is reachable through the Slurm command line (:mod:`tests.fakes.slurm_cli`) and
through slurmrestd (:mod:`tests.fakes.slurmrestd`).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.resources import format_duration
from airflow_provider_hpcai.slurm import commands
from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX, build_sbatch_script, output_paths
from airflow_provider_hpcai.slurm.states import JobStatus, Phase, phase_of
from airflow_provider_hpcai.slurm.transport import SlurmTransport
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["OUTCOME_KINDS", "FakeJob", "FakeSlurmTransport", "Outcome", "outcome"]

GIB = 1024**3
MIB = 1024**2
EPOCH = 1_800_000_000


@dataclasses.dataclass
class Outcome:
    """How a fake job ends.

    :param state: the job's final state as sacct prints it (``"CANCELLED by 0"`` is allowed).
    :param exit_code: the exit code (the part before ``:`` of sacct's ExitCode).
    :param signal: the signal (the part after ``:``).
    :param batch_state: the ``.batch`` step's state (default: the job's state).
    :param batch_signal: the ``.batch`` step's signal (default: ``signal``).
    :param max_rss_bytes: the ``.batch`` step's MaxRSS; ``None``: 64 MiB.
    :param stdout: text the job writes to its output file.
    :param stderr: text the job writes to its error file.
    :param node_list: the nodes it ran on.
    :param elapsed: its run time in seconds.
    """

    state: str = "COMPLETED"
    exit_code: int = 0
    signal: int = 0
    batch_state: str | None = None
    batch_signal: int | None = None
    max_rss_bytes: int | None = None
    stdout: str = ""
    stderr: str = ""
    node_list: str = "node1"
    elapsed: int = 42


OUTCOME_KINDS = ("completed", "failed", "timeout", "oom", "oom_text", "node_fail", "preempted", "cancelled")


def outcome(kind: str, *, requested_memory_bytes: int | None = None, job_id: str = "%j") -> Outcome:
    """A realistic :class:`Outcome` of one kind (see :data:`OUTCOME_KINDS`).

    ``oom`` mirrors what ``OverMemoryKill`` leaves behind (checked on a real 22.05 cluster): the
    job ``FAILED`` with ExitCode ``0:9``, its ``.batch`` step ``CANCELLED by 0`` with MaxRSS above
    the request, and no text at all; ``oom_text`` adds slurmstepd's notice to the error output.
    """
    over = 2 * (requested_memory_bytes or GIB)
    kinds = {
        "completed": Outcome("COMPLETED", stdout="result=42\n", max_rss_bytes=100 * MIB),
        "failed": Outcome("FAILED", 3, stderr="Traceback (most recent call last):\nValueError: bad input\n"),
        "timeout": Outcome("TIMEOUT", 0, 0, batch_state="CANCELLED", batch_signal=15,
                           stderr=f"slurmstepd: error: *** JOB {job_id} ON node1 CANCELLED AT "
                                  "2027-01-15T10:00:00 DUE TO TIME LIMIT ***\n"),
        "oom": Outcome("FAILED", 0, 9, batch_state="CANCELLED by 0", max_rss_bytes=over),
        "oom_text": Outcome("FAILED", 0, 9, batch_state="CANCELLED by 0", max_rss_bytes=over,
                            stderr="slurmstepd: error: Exceeded job memory limit\n"),
        "node_fail": Outcome("NODE_FAIL", 0, 0, node_list="node7"),
        "preempted": Outcome("PREEMPTED", 0, 0, batch_state="CANCELLED", batch_signal=15),
        "cancelled": Outcome("CANCELLED by 1001", 0, 0, batch_state="CANCELLED", batch_signal=15),
    }
    if kind not in kinds:
        raise KeyError(f"unknown outcome {kind!r}; use one of {OUTCOME_KINDS}")
    return kinds[kind]


@dataclasses.dataclass
class FakeJob:
    """One job the fake cluster knows."""

    job_id: str
    name: str
    script: str
    workdir: str
    spec: JobSpec | None
    tag: str | None
    outcome: Outcome
    requested_memory_bytes: int | None = None
    time_limit_seconds: int | None = None
    alloc_cpus: int = 1
    array: str | None = None
    state: str = "PENDING"
    reason: str = "Priority"
    exit_code: int = 0
    signal: int = 0
    stdout: str = ""
    stderr: str = ""
    submitted: int = EPOCH
    started: int | None = None
    ended: int | None = None
    in_controller: bool = True
    in_accounting: bool = True
    body: dict[str, Any] | None = None  # the REST submission body, when submitted over REST

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    @property
    def base_state(self) -> str:
        return self.state.split(" ")[0]

    @property
    def stdout_path(self) -> str:
        return output_paths(self.workdir)[0].replace("%j", self.job_id)

    @property
    def stderr_path(self) -> str:
        return output_paths(self.workdir)[1].replace("%j", self.job_id)

    @property
    def comment(self) -> str:
        return COMMENT_PREFIX + self.tag if self.tag else ""


class FakeSlurmTransport(SlurmTransport):
    """An in-memory Slurm cluster.

    :param first_job_id: the id the first submission gets.
    :param auto_advance: advance every active job one step on each status query (so a poller
        drives jobs to their end without the test stepping them).
    :param default_outcome: the outcome kind of jobs with nothing scripted.
    """

    name = "fake"

    def __init__(self, *, first_job_id: int = 1000, auto_advance: bool = False, default_outcome: str = "completed",
                 workdir: str = "/home/hpcai/.hpcai/jobs") -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.cancelled: list[str] = []
        self.dirs: list[str] = []
        self.files: dict[str, bytes] = {}
        self.auto_advance = auto_advance
        self.default_outcome = default_outcome
        self.workdir = workdir
        self.now = EPOCH
        self._next_id = first_job_id
        self._scripted: collections.deque[str | Outcome] = collections.deque()
        self._by_name: dict[str, str | Outcome] = {}
        self._failures: list[dict[str, Any]] = []
        self.node_records = [("node1", "debug*", "idle", "0/8/0/8", "64000", "60000"),
                             ("node2", "debug*", "mixed", "4/4/0/8", "64000", "30000"),
                             ("gpu1", "gpu", "allocated", "16/0/0/16", "256000", "1000")]
        self.partition_lines = [
            ("PartitionName=debug Default=YES MaxTime=01:00:00 State=UP TotalCPUs=16 Nodes=node[1-2] "
             "MaxMemPerNode=UNLIMITED"),
            "PartitionName=gpu Default=NO MaxTime=2-00:00:00 State=UP TotalCPUs=16 Nodes=gpu1 MaxMemPerNode=256000",
        ]

    # ------------------------------------------------------------------ scripting the cluster
    def script_outcomes(self, *kinds: str | Outcome) -> None:
        """The outcomes of the next submissions, in order (kind names or :class:`Outcome`)."""
        self._scripted.extend(kinds)

    def script_outcome_for(self, job_name: str, kind: str | Outcome) -> None:
        """The outcome of every job submitted with ``job_name``."""
        self._by_name[job_name] = kind

    def fail_next(self, n: int = 1, *, retryable: bool = True, ops: Sequence[str] | None = None,
                  after_effect: bool = False, stderr: str = "slurm_load_jobs error: Unable to contact slurm controller "
                  "(connect failure)") -> None:
        """Make the next ``n`` calls (of ``ops``, default any) raise :class:`TransportError`.

        :param after_effect: the call takes effect first and only its answer is lost (a
            submission that went through although sbatch reported an error).
        """
        for _ in range(n):
            self._failures.append({"retryable": retryable, "ops": set(ops) if ops else None,
                                   "after": after_effect, "stderr": stderr})

    @property
    def status_queries(self) -> int:
        """How many status queries (``statuses``) reached the controller."""
        return self.calls["statuses"]

    @property
    def submissions(self) -> int:
        return self.calls["submit"]

    def job(self, job_id: str) -> FakeJob:
        return self.jobs[str(job_id)]

    def only_job(self) -> FakeJob:
        assert len(self.jobs) == 1, f"expected one job, the cluster has {sorted(self.jobs)}"
        return next(iter(self.jobs.values()))

    def advance(self, job_id: str | None = None, steps: int = 1) -> None:
        """Move one job (default: every active job) ``steps`` steps: PENDING -> RUNNING -> final."""
        for _ in range(steps):
            self.now += 10
            targets = [self.jobs[str(job_id)]] if job_id is not None else list(self.jobs.values())
            for job in targets:
                self._step(job)

    def run_to_end(self, job_id: str | None = None) -> None:
        self.advance(job_id, steps=2)

    def finish(self, job_id: str, kind: str | Outcome) -> None:
        """End a job now with ``kind``."""
        job = self.jobs[str(job_id)]
        job.outcome = self._resolve_outcome(kind, job)
        while job.phase is Phase.ACTIVE:
            self._step(job)

    def emit(self, job_id: str, text: str, stream: str = "stdout") -> None:
        """Append ``text`` to a job's output (as the running job would)."""
        job = self.jobs[str(job_id)]
        setattr(job, stream, getattr(job, stream) + text)

    def vanish(self, job_id: str, *, from_accounting: bool = True) -> None:
        """Forget a job: purged from the controller (MinJobAge) and, by default, from accounting."""
        job = self.jobs[str(job_id)]
        job.in_controller = False
        job.in_accounting = not from_accounting

    def _step(self, job: FakeJob) -> None:
        if job.state == "PENDING":
            job.state, job.reason, job.started = "RUNNING", "None", self.now
        elif job.state == "RUNNING":
            result = job.outcome
            job.state, job.reason = result.state, "None"
            job.exit_code, job.signal = result.exit_code, result.signal
            job.ended = self.now
            job.stdout += result.stdout
            job.stderr += result.stderr.replace("%j", job.job_id)

    def _resolve_outcome(self, kind: str | Outcome, job: FakeJob) -> Outcome:
        if isinstance(kind, Outcome):
            return kind
        return outcome(kind, requested_memory_bytes=job.requested_memory_bytes, job_id=job.job_id)

    # ------------------------------------------------------------------ outage injection
    def _gate(self, op: str) -> dict[str, Any] | None:
        """Count the call; raise the next injected failure meant for ``op`` (or hand it back when
        the call should take effect first)."""
        self.calls[op] += 1
        for index, failure in enumerate(self._failures):
            if failure["ops"] is None or op in failure["ops"]:
                del self._failures[index]
                if failure["after"]:
                    return failure
                raise self._error(op, failure)
        return None

    @staticmethod
    def _error(op: str, failure: dict[str, Any]) -> TransportError:
        return TransportError(f"{op} failed", command=op, returncode=1, stderr=failure["stderr"],
                              retryable=failure["retryable"])

    # ------------------------------------------------------------------ adding jobs
    def add_job(self, *, name: str, script: str, workdir: str, spec: JobSpec | None = None, tag: str | None = None,
                requested_memory_bytes: int | None = None, time_limit_seconds: int | None = None,
                alloc_cpus: int = 1, array: str | None = None, body: dict[str, Any] | None = None) -> FakeJob:
        """Put a job in the queue (used by :meth:`submit` and the fake REST server)."""
        job_id = str(self._next_id)
        self._next_id += 1
        job = FakeJob(job_id, name, script, workdir, spec, tag, Outcome(), requested_memory_bytes,
                      time_limit_seconds, alloc_cpus, array, submitted=self.now, body=body)
        kind = self._by_name.get(name) or (self._scripted.popleft() if self._scripted else self.default_outcome)
        job.outcome = self._resolve_outcome(kind, job)
        self.jobs[job_id] = job
        return job

    # ------------------------------------------------------------------ SlurmTransport
    def submit(self, spec: JobSpec, workdir: str) -> str:
        lost = self._gate("submit")
        res = spec.resources
        job = self.add_job(name=spec.name, script=build_sbatch_script(spec, workdir), workdir=workdir, spec=spec,
                           tag=spec.tag, requested_memory_bytes=res.memory_bytes,
                           time_limit_seconds=res.time_limit_seconds, alloc_cpus=res.total_cpus, array=spec.array)
        if lost:
            raise self._error("submit", lost)
        return job.job_id

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self._gate("statuses")
        if self.auto_advance:
            self.advance()
        wanted = {commands.check_job_id(j) for j in job_ids}
        return {j: self._status(self.jobs[j]) for j in wanted if j in self.jobs and self.jobs[j].in_controller}

    def my_jobs(self) -> dict[str, JobStatus]:
        self._gate("my_jobs")
        return {j.job_id: self._status(j) for j in self.jobs.values() if j.in_controller}

    def _status(self, job: FakeJob) -> JobStatus:
        code = None if job.phase is Phase.ACTIVE else (job.exit_code or (128 + job.signal if job.signal else 0))
        return JobStatus(job.job_id, job.base_state, job.reason if job.reason != "None" else "", code, job.tag)

    releases_elements = True

    def release(self, job_id: str) -> None:
        """Release a held job or array element (recorded in :attr:`released`)."""
        self._gate("release")
        self.released = [*getattr(self, "released", []), commands.check_job_id(job_id)]

    def cancel(self, job_id: str) -> None:
        self._gate("cancel")
        job = self.jobs.get(commands.check_job_id(job_id))
        self.cancelled.append(str(job_id))
        if job is not None and job.phase is Phase.ACTIVE:
            job.outcome = outcome("cancelled")
            if job.state == "PENDING":
                job.state = "RUNNING"
            self._step(job)

    def accounting(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._gate("accounting")
        return commands.parse_sacct(self.sacct_text(job_ids))

    def accounting_since(self, since: str) -> dict[str, dict[str, Any]]:
        """Every job accounting holds (the fake keeps no submit clock finer than the session)."""
        self._gate("accounting")
        return commands.parse_sacct(self.sacct_text(list(self.jobs)))

    def sacct_text(self, job_ids: Sequence[str]) -> str:
        """What ``sacct --parsable2 --noheader --format=<SACCT_FIELDS>`` prints for these jobs."""
        lines = []
        for job_id in job_ids:
            job = self.jobs.get(str(job_id))
            if job is None or not job.in_accounting:
                continue
            lines.extend(_sacct_rows(job))
        return "".join(line + "\n" for line in lines)

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        self._gate("read_file")
        data = self.files.get(path)
        if data is None:
            for job in self.jobs.values():
                if path == job.stdout_path:
                    data = job.stdout.encode()
                elif path == job.stderr_path:
                    data = job.stderr.encode()
        return (data or b"")[offset: offset + limit]

    def nodes(self) -> list[dict[str, Any]]:
        self._gate("nodes")
        return commands.parse_sinfo(self.sinfo_text())

    def sinfo_text(self) -> str:
        return "".join("|".join(record) + "\n" for record in self.node_records)

    def partitions(self) -> dict[str, dict[str, Any]]:
        self._gate("partitions")
        return commands.parse_partitions("\n".join(self.partition_lines) + "\n")

    def ensure_dir(self, path: str) -> None:
        self._gate("ensure_dir")
        self.dirs.append(path)

    def default_workdir(self) -> str:
        return self.workdir


def _iso(stamp: int | None) -> str:
    if stamp is None:
        return "Unknown"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _sacct_rows(job: FakeJob) -> list[str]:
    """sacct lines for one job: the allocation, then ``.batch`` and ``.extern`` once it started."""
    end = job.ended if job.ended is not None else None
    elapsed = format_duration(((end or job.started or 0) - (job.started or 0)) if job.started else 0)
    nodes = job.outcome.node_list if job.started else "None assigned"
    req_mem = f"{job.requested_memory_bytes // MIB}M" if job.requested_memory_bytes else ""
    limit = format_duration(job.time_limit_seconds) if job.time_limit_seconds else "UNLIMITED"
    common = f"{_iso(job.submitted)}|{_iso(job.started)}|{_iso(end)}"
    rows = [(f"{job.job_id}|{job.name}|{job.state}|{job.exit_code}:{job.signal}|{elapsed}||00:00:01.500|{nodes}|"
             f"{req_mem}|{limit}|{job.alloc_cpus}|{common}|{job.comment}")]
    if job.started:
        result = job.outcome
        final = job.phase is not Phase.ACTIVE
        batch_state = (result.batch_state or job.state) if final else "RUNNING"
        signal = (result.batch_signal if result.batch_signal is not None else job.signal) if final else 0
        rss = result.max_rss_bytes if result.max_rss_bytes is not None else 64 * MIB
        rows.append(f"{job.job_id}.batch|batch|{batch_state}|{job.exit_code}:{signal}|{elapsed}|{rss // 1024}K|"
                    f"00:00:01.400|{nodes}|||{job.alloc_cpus}|{common}|")
        rows.append(f"{job.job_id}.extern|extern|{'COMPLETED' if final else 'RUNNING'}|0:0|{elapsed}|1024K|"
                    f"00:00:00.001|{nodes}|||{job.alloc_cpus}|{common}|")
    return rows

