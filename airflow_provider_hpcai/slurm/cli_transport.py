"""The Slurm CLI as a transport, run on this host or over one reused SSH connection."""

from __future__ import annotations

import abc
import dataclasses
import errno
import os
import shlex
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.jobs.output import read_file_part
from airflow_provider_hpcai.slurm import cli_json, commands
from airflow_provider_hpcai.slurm.script import build_sbatch_script
from airflow_provider_hpcai.slurm.states import JobStatus
from airflow_provider_hpcai.slurm.transport import SlurmTransport, is_transient
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["CliTransport", "CommandResult", "CommandRunner", "LocalRunner", "SshRunner"]


@dataclasses.dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> CommandResult:
        """Raise :class:`TransportError` unless the command succeeded."""
        if self.returncode != 0:
            raise TransportError(
                f"{what} failed",
                command=shlex.join(self.argv),
                returncode=self.returncode,
                stdout=self.stdout,
                stderr=self.stderr,
                retryable=is_transient(self.stderr + self.stdout),
            )
        return self


class CommandRunner(abc.ABC):
    """Runs an argv list somewhere and returns its result; never through a local shell."""

    @abc.abstractmethod
    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult: ...

    @abc.abstractmethod
    def read_file(self, path: str, offset: int, limit: int) -> bytes: ...

    @abc.abstractmethod
    def home(self) -> str: ...

    def close(self) -> None:
        return None


class LocalRunner(CommandRunner):
    """Runs commands on this host with :func:`subprocess.run` (argv, no shell)."""

    def __init__(self, path_prefix: str | None = None) -> None:
        self.path_prefix = path_prefix

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        env = dict(os.environ)
        if self.path_prefix:
            env["PATH"] = self.path_prefix + os.pathsep + env.get("PATH", "")
        try:
            proc = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except FileNotFoundError as err:
            raise TransportError(
                f"{argv[0]} is not installed on this host; install the Slurm client or use the ssh/rest transport",
                command=shlex.join(argv),
            ) from err
        except subprocess.TimeoutExpired as err:
            raise TransportError(
                f"{argv[0]} did not answer within {timeout:.0f} s", command=shlex.join(argv), retryable=True
            ) from err
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        try:
            return read_file_part(path, offset, limit)
        except PermissionError as err:
            raise TransportError(f"cannot read {path}: permission denied") from err

    def home(self) -> str:
        return os.path.expanduser("~")


class SshRunner(CommandRunner):
    """Runs commands over one SSH connection (from an Airflow SSH connection), reused and
    re-opened when it drops. Each argv is joined with :func:`shlex.join` for the remote shell."""

    def __init__(self, ssh_conn_id: str) -> None:
        self.ssh_conn_id = ssh_conn_id
        self._client: Any = None
        self._sftp: Any = None  # one SFTP session on the connection, kept for every read
        self._lock = threading.Lock()
        self._home: str | None = None

    def _connect(self) -> Any:
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            from airflow_provider_hpcai.utils.extras import require_extra

            require_extra("ssh", "airflow.providers.ssh.hooks.ssh",
                          feature=f"Slurm over SSH (connection {self.ssh_conn_id!r})")
            from airflow.providers.ssh.hooks.ssh import SSHHook

            self._sftp = None
            try:
                self._client = SSHHook(ssh_conn_id=self.ssh_conn_id).get_conn()
            except Exception as err:  # paramiko/socket errors: an outage, retryable
                raise TransportError(
                    f"cannot open SSH connection {self.ssh_conn_id!r}: {type(err).__name__}: {err}", retryable=True
                ) from err
        return self._client

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        command = shlex.join(argv)
        with self._lock:
            try:
                client = self._connect()
                chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
                if stdin is not None:
                    chan_in.write(stdin)
                    chan_in.channel.shutdown_write()
                out = chan_out.read().decode("utf-8", "replace")
                err_text = chan_err.read().decode("utf-8", "replace")
                code = chan_out.channel.recv_exit_status()
            except TransportError:
                raise
            except Exception as err:  # dropped connection mid-command
                self._client = self._sftp = None
                raise TransportError(
                    f"SSH command failed: {type(err).__name__}: {err}", command=command, retryable=True
                ) from err
        return CommandResult(tuple(argv), code, out, err_text)

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        with self._lock:
            try:
                client = self._connect()
                if self._sftp is None or self._sftp.get_channel().closed:
                    self._sftp = client.open_sftp()
                with self._sftp.open(path, "rb") as handle:
                    handle.seek(offset)
                    return handle.read(limit)
            except TransportError:
                raise
            except Exception as err:  # OSError or paramiko.SSHException: the next read reconnects
                if isinstance(err, FileNotFoundError) or getattr(err, "errno", None) == errno.ENOENT:
                    return b""
                if isinstance(err, PermissionError) or getattr(err, "errno", None) == errno.EACCES:
                    raise TransportError(f"cannot read {path} over SSH: permission denied") from err  # not an outage
                self._client = self._sftp = None
                raise TransportError(f"cannot read {path} over SSH: {err}", retryable=True) from err

    def home(self) -> str:
        if self._home is None:
            result = self.run(["pwd"]).check("finding the remote home directory")
            self._home = result.stdout.strip() or "/tmp"
        return self._home

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = self._sftp = None


class CliTransport(SlurmTransport):
    """sbatch / squeue / sacct / scancel through a :class:`CommandRunner`."""

    def __init__(self, runner: CommandRunner, *, name: str = "local", command_timeout: float = 60) -> None:
        self.runner = runner
        self.name = name
        self.command_timeout = command_timeout
        self._version: tuple[int, int] | None = None  # squeue --version: asked once, on first use

    def _slurm_version(self) -> tuple[int, int] | None:
        """This cluster's Slurm release (``(24, 11)``), from ``squeue --version``; ``None`` when unreadable."""
        if self._version is None:
            result = self.runner.run(["squeue", "--version"], timeout=self.command_timeout)
            # unreadable (a connection that failed): None now, asked again next time
            self._version = commands.parse_slurm_version(result.stdout) if result.returncode == 0 else None
        return self._version

    def _light_squeue(self) -> bool:
        """Whether this cluster's squeue has ``--only-job-state`` (Slurm 24.05+)."""
        version = self._slurm_version()
        return version is not None and version >= commands.ONLY_JOB_STATE_SINCE

    def _json(self) -> bool:
        """Whether squeue/sacct records are read as ``--json`` (Slurm 24.11+, :mod:`cli_json`), else as text."""
        return cli_json.uses_json(self._slurm_version())

    def _run(self, argv: list[str], what: str, stdin: str | None = None) -> CommandResult:
        return self.runner.run(argv, stdin=stdin, timeout=self.command_timeout).check(what)

    def submit(self, spec: JobSpec, workdir: str) -> str:
        script = build_sbatch_script(spec, workdir)
        result = self._run(commands.sbatch_argv(), "sbatch", stdin=script)
        return commands.parse_sbatch(result.stdout)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        for group in commands.chunk(job_ids):
            argv = commands.squeue_argv(group, only_state=self._light_squeue())
            result = self.runner.run(argv, timeout=self.command_timeout)
            if result.returncode != 0 and "invalid job id" in result.stderr.lower():
                continue  # none of them is known any more
            result.check("squeue")
            found.update(commands.parse_squeue(result.stdout, elements=any(map(commands.is_element, group))))
        return found

    def my_jobs(self) -> dict[str, JobStatus]:
        if self._json():
            argv = commands.squeue_json_argv()
            return cli_json.parse_squeue_json(self._run(argv, "squeue --me").stdout, command=shlex.join(argv))
        return commands.parse_squeue(self._run(commands.squeue_mine_argv(), "squeue --me").stdout)

    def cancel(self, job_id: str) -> None:
        self._run(commands.scancel_argv(job_id), "scancel")

    releases_elements = True

    def release(self, job_id: str) -> None:
        """Release a held job or array element (no error if it is not held)."""
        self._run(commands.release_argv(job_id), "scontrol release")

    def accounting(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        as_json = self._json()
        for group in commands.chunk(job_ids):
            elements = any(map(commands.is_element, group))
            if as_json:
                argv = commands.sacct_json_argv(group)
                text = self._run(argv, "sacct").stdout
                records.update(cli_json.parse_sacct_json(text, elements=elements, command=shlex.join(argv)))
                continue
            text = self._run(commands.sacct_argv(group), "sacct").stdout
            records.update(commands.parse_sacct(text, elements=elements))
        return records

    def accounting_since(self, since: str) -> dict[str, dict[str, Any]]:
        if self._json():
            argv = commands.sacct_json_argv(since=since)
            return cli_json.parse_sacct_json(self._run(argv, "sacct --starttime").stdout, command=shlex.join(argv))
        return commands.parse_sacct(self._run(commands.sacct_argv(since=since), "sacct --starttime").stdout)

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return self.runner.read_file(path, offset, limit)

    def nodes(self) -> list[dict[str, Any]]:
        return commands.parse_sinfo(self._run(commands.sinfo_argv(), "sinfo").stdout)

    def partitions(self) -> dict[str, dict[str, Any]]:
        return commands.parse_partitions(self._run(commands.partitions_argv(), "scontrol show partition").stdout)

    def ensure_dir(self, path: str) -> None:
        self._run(["mkdir", "-p", "--", path], f"creating {path}")

    def default_workdir(self) -> str:
        return self.runner.home().rstrip("/") + "/.hpcai/jobs"

    def close(self) -> None:
        self.runner.close()
