"""The local transport as another user: every command through ``sudo -n -u <user> --``.

:func:`sudo_argv` is the one pure builder (string-tested); :class:`SudoRunner` runs its argv
with :func:`subprocess.run` (no shell) and reads job output as the user (``dd``), so the kernel
decides what the user may read, and refuses outright any file the user does not own.

The worker needs a sudoers rule for exactly the allowlisted users and programs, e.g.
(``scripts/local-slurm`` writes this one for its test users)::

    Defaults:airflow env_keep += "SLURM_CONF"
    airflow ALL=(hpc-alice,hpc-bob) NOPASSWD: /usr/bin/sbatch, /usr/bin/squeue, /usr/bin/scancel, \
        /usr/bin/sacct, /usr/bin/sinfo, /usr/bin/scontrol, /usr/bin/mkdir, /usr/bin/dd, /usr/bin/stat
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.identity.mapping import RunAsRefusedError, check_user_name
from airflow_provider_hpcai.slurm.cli_transport import CommandResult, CommandRunner, SshRunner

__all__ = ["SUDO_PROGRAMS", "SudoRunner", "UserSshRunner", "check_owner", "dd_argv", "sudo_argv"]

#: The programs the local transport runs as a user (the sudoers rule lists exactly these).
SUDO_PROGRAMS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol", "mkdir", "dd", "stat")
#: Variables passed through sudo when set (sudoers: ``env_keep += "SLURM_CONF"``).
KEEP_ENV = ("SLURM_CONF",)


def check_owner(runner: CommandRunner, user: str, path: str, seen: set[str]) -> bool:
    """Whether ``path`` exists, once it is known to belong to ``user`` (``stat`` run as the user).

    Asked once per path (``seen`` remembers the answer).

    :raises RunAsRefusedError: it belongs to another user.
    :raises TransportError: the user may not even look at it (another user's private folder).
    """
    if path in seen:
        return True
    result = runner.run(["stat", "-L", "-c", "%U", "--", path], timeout=30)
    if result.returncode != 0:
        lowered = result.stderr.lower()
        if "no such file" in lowered:
            return False
        if "permission denied" in lowered:
            raise TransportError(f"cannot read {path} as {user}: permission denied (another user's folder?)",
                                 command="stat", returncode=result.returncode, retryable=False)
        result.check(f"stat {path}")
    owner = result.stdout.strip()
    if owner != user:
        raise RunAsRefusedError(f"refusing to read {path} for {user!r}: it belongs to {owner[:40]!r}, and a job's "
                                "output is read only for the user it ran as")
    seen.add(path)
    return True


def sudo_argv(user: str, argv: Sequence[str], *, sudo: str = "sudo", keep_env: Sequence[str] = ()) -> list[str]:
    """``sudo -n -u <user> [--preserve-env=...] -- <argv>``.

    ``-n``: never prompt (a missing rule fails at once); ``--``: nothing in ``argv`` is read as a
    sudo option. The user is checked again here (no ``-``, ``#uid``, ``root``, shell characters).

    :raises RunAsRefusedError: a malformed user or root.
    :raises ValueError: an empty argv, or NUL in an argument.
    """
    check_user_name(user)
    if not argv:
        raise ValueError("no command to run")
    if any("\0" in part for part in argv):
        raise ValueError("NUL in a command argument")
    keep = [name for name in keep_env if name.isidentifier()]
    head = [sudo, "-n", "-u", user]
    if keep:
        head.append("--preserve-env=" + ",".join(keep))
    return [*head, "--", *argv]


def dd_argv(path: str, offset: int, limit: int) -> list[str]:
    """``dd`` that copies ``limit`` bytes of ``path`` from ``offset`` to stdout (GNU dd's byte flags)."""
    if not path.startswith("/") or "\0" in path or "\n" in path:
        raise ValueError(f"job output path {path!r} must be absolute, on one line")
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must not be negative")
    return ["dd", f"if={path}", "iflag=skip_bytes,count_bytes", f"skip={int(offset)}", f"count={int(limit)}",
            "bs=1M", "status=none"]


class SudoRunner(CommandRunner):
    """Runs Slurm commands on this host as ``user`` through sudo, and reads the user's files.

    :param user: the Slurm user (already checked against the allowlist by the caller).
    :param sudo: the sudo program.
    """

    def __init__(self, user: str, *, sudo: str = "sudo") -> None:
        self.user = check_user_name(user)
        self.sudo = sudo
        self._owned: set[str] = set()  # paths already seen owned by the user

    def _absolute(self, argv: Sequence[str]) -> list[str]:
        """``argv`` with its program resolved on this process's PATH (sudo's secure_path may not hold it)."""
        program = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
        if program is None:
            raise TransportError(f"{argv[0]} is not installed on this host", command=shlex.join(argv))
        return [program, *argv[1:]]

    def _exec(self, argv: Sequence[str], *, stdin: str | bytes | None, timeout: float, text: bool
              ) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        full = sudo_argv(self.user, self._absolute(argv), sudo=self.sudo,
                         keep_env=[k for k in KEEP_ENV if k in os.environ])
        try:
            # umask 077: sudo runs the command with the union of this and sudoers' umask, and sbatch
            # hands it to the job, so its output files are the user's alone.
            return subprocess.run(full, input=stdin, capture_output=True, text=text, timeout=timeout, check=False,
                                  umask=0o077, cwd="/")
        except FileNotFoundError as err:
            raise TransportError(f"{self.sudo} is not installed on this host: the local transport runs jobs as "
                                 f"{self.user!r} through sudo", command=shlex.join(full)) from err
        except subprocess.TimeoutExpired as err:
            raise TransportError(f"{argv[0]} as {self.user} did not answer within {timeout:.0f} s",
                                 command=shlex.join(full), retryable=True) from err

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        proc = self._exec(argv, stdin=stdin, timeout=timeout, text=True)
        if proc.returncode != 0 and "a password is required" in proc.stderr:
            raise TransportError(
                f"sudo refused to run {argv[0]} as {self.user!r}: the worker needs a sudoers rule for this user "
                "(see SECURITY.md, 'Jobs that run as their owner')", command=shlex.join(proc.args),
                returncode=proc.returncode, stderr=proc.stderr)
        return CommandResult(tuple(proc.args), proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        """Bytes of a file the user owns; ``b""`` while it does not exist.

        :raises RunAsRefusedError: the file belongs to someone else (another user's job output).
        """
        argv = dd_argv(path, offset, limit)
        if not check_owner(self, self.user, path, self._owned):
            return b""
        proc = self._exec(argv, stdin=None, timeout=60, text=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            if "no such file" in err.lower():
                return b""
            raise TransportError(f"cannot read {path} as {self.user}", command=shlex.join(proc.args),
                                 returncode=proc.returncode, stderr=err,
                                 retryable="permission denied" not in err.lower())
        return proc.stdout  # type: ignore[no-any-return]

    def home(self) -> str:
        try:
            return pwd.getpwnam(self.user).pw_dir
        except KeyError as err:
            raise TransportError(f"user {self.user!r} does not exist on this host (local transport)") from err


class UserSshRunner(SshRunner):
    """An SSH runner whose connection logs in as ``user``; it reads only files ``user`` owns."""

    def __init__(self, ssh_conn_id: str, user: str) -> None:
        super().__init__(ssh_conn_id)
        self.user = check_user_name(user)
        self._owned: set[str] = set()

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        if not check_owner(self, self.user, path, self._owned):
            return b""
        return super().read_file(path, offset, limit)
