"""The fake cluster behind the Slurm command line (``sbatch``, ``squeue``, ``sacct``, ...).

:class:`FakeSlurmCli` is a :class:`~airflow_provider_hpcai.slurm.cli_transport.CommandRunner`
that answers the argv :mod:`airflow_provider_hpcai.slurm.commands` builds, the way Slurm 22.05
prints, so :class:`~airflow_provider_hpcai.slurm.cli_transport.CliTransport` is tested at its
real seam.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from airflow_provider_hpcai.slurm import commands
from airflow_provider_hpcai.slurm.cli_transport import CommandResult, CommandRunner
from tests.fakes.slurm import MIB, FakeJob, FakeSlurmTransport

__all__ = ["FakeSlurmCli", "render_squeue"]


class FakeSlurmCli(CommandRunner):
    """The fake cluster behind the Slurm commands (``sbatch``, ``squeue``, ``sacct``, ...).

    Answers the argv :mod:`airflow_provider_hpcai.slurm.commands` builds, the way Slurm 22.05
    prints; every argv is recorded in :attr:`argvs`.
    """

    def __init__(self, cluster: FakeSlurmTransport | None = None, *, home: str = "/home/hpcai") -> None:
        self.cluster = cluster or FakeSlurmTransport()
        self.argvs: list[list[str]] = []
        self.stdins: list[str | None] = []
        self._home = home
        self.down = False  # the controller does not answer
        self.version = "22.05.8"  # what `squeue --version` says (24.05+: --only-job-state)

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        argv = list(argv)
        self.argvs.append(argv)
        self.stdins.append(stdin)
        program = argv[0]
        if argv[1:] == ["--version"]:  # answered by the program itself, controller or not
            return CommandResult(tuple(argv), 0, f"slurm {self.version}\n", "")
        if self.down and "--only-job-state" in argv:  # what 24.11.5's squeue says then
            return CommandResult(tuple(argv), 1, "", "squeue: error: slurm_load_job_state: Unable to query jobs "
                                                     "state: Unspecified error\n")
        if self.down and program in {"sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol"}:
            return CommandResult(tuple(argv), 1, "", f"{program}: error: Unable to contact slurm controller "
                                                     "(connect failure)\n")
        handler = getattr(self, "_" + program, None)
        if handler is None:
            return CommandResult(tuple(argv), 127, "", f"bash: {program}: command not found\n")
        return handler(argv, stdin)

    def _options(self, argv: list[str]) -> dict[str, str]:
        return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv[1:] if a.startswith("--"))

    def _sbatch(self, argv: list[str], stdin: str | None) -> CommandResult:
        directives: dict[str, str] = {}
        for line in (stdin or "").splitlines()[1:]:
            if not line.startswith("#SBATCH "):
                break  # sbatch stops reading directives at the first command
            key, _, value = line[len("#SBATCH --"):].partition("=")
            directives[key] = shlex.split(value)[0] if value else ""  # a bare flag: --no-requeue
        tag = commands.tag_from_comment(directives.get("comment"))
        mem = directives.get("mem")
        job = self.cluster.add_job(name=directives.get("job-name", "sbatch"), script=stdin or "",
                                   workdir=directives.get("chdir", self._home), tag=tag,
                                   requested_memory_bytes=int(mem[:-1]) * MIB if mem else None)
        return CommandResult(tuple(argv), 0, f"{job.job_id}\n", "")

    def _squeue(self, argv: list[str], stdin: str | None) -> CommandResult:
        options = self._options(argv)
        fmt = options["format"]
        if "jobs" in options:
            ids = options["jobs"].split(",")
            known = [j for j in ids if j in self.cluster.jobs and self.cluster.jobs[j].in_controller]
            if not known:
                return CommandResult(tuple(argv), 1, "", "slurm_load_jobs error: Invalid job id specified\n")
        else:
            known = [j for j, job in self.cluster.jobs.items() if job.in_controller]
        self.cluster.calls["statuses" if "jobs" in options else "my_jobs"] += 1
        lines = [_squeue_line(fmt, self.cluster.jobs[j]) for j in known]
        if "only-job-state" in options:  # 24.05+: no reason, no comment
            lines = ["|".join([*parts[:3], "None", "(null)"]) for parts in (line.split("|", 4) for line in lines)]
        out = "".join(line + "\n" for line in lines)
        return CommandResult(tuple(argv), 0, out, "")

    def _sacct(self, argv: list[str], stdin: str | None) -> CommandResult:
        options = self._options(argv)
        self.cluster.calls["accounting"] += 1
        return CommandResult(tuple(argv), 0, self.cluster.sacct_text(options.get("jobs", "").split(",")), "")

    def _scancel(self, argv: list[str], stdin: str | None) -> CommandResult:
        self.cluster.cancel(argv[1])
        return CommandResult(tuple(argv), 0, "", "")

    def _sinfo(self, argv: list[str], stdin: str | None) -> CommandResult:
        return CommandResult(tuple(argv), 0, self.cluster.sinfo_text(), "")

    def _scontrol(self, argv: list[str], stdin: str | None) -> CommandResult:
        return CommandResult(tuple(argv), 0, "\n".join(self.cluster.partition_lines) + "\n", "")

    def _mkdir(self, argv: list[str], stdin: str | None) -> CommandResult:
        self.cluster.dirs.append(argv[-1])
        return CommandResult(tuple(argv), 0, "", "")

    def _pwd(self, argv: list[str], stdin: str | None) -> CommandResult:
        return CommandResult(tuple(argv), 0, self._home + "\n", "")

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        return self.cluster.read_file(path, offset, limit)

    def home(self) -> str:
        return self._home


#: squeue format codes (Slurm 22.05 man page, "Valid for jobs"): %A is the job id, unique for
#: each element of an array; %a is the account; %F the array's base job id; %K the index.
_SQUEUE_CODES = {
    "A": lambda job: job.job_id,
    "a": lambda job: "hpcai",
    "F": lambda job: job.job_id,
    "K": lambda job: "N/A",
    "i": lambda job: job.job_id,
    "T": lambda job: job.base_state,
    "r": lambda job: job.reason,
    "k": lambda job: job.comment or "(null)",
    "j": lambda job: job.name,
}


def render_squeue(fmt: str, fields: dict[str, str]) -> str:
    """Render one squeue line for ``fmt`` from a mapping of format letters to values."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append(fields[fmt[i + 1]])
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


def _squeue_line(fmt: str, job: FakeJob) -> str:
    return render_squeue(fmt, {code: value(job) for code, value in _SQUEUE_CODES.items()})
