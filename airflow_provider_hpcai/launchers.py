"""How a job starts its ranks: ``srun``, ``mpiexec``, ``mpirun``, or nothing for one rank.

Launchers are pure objects that turn a program's argv into the argv that starts it on
``ranks`` MPI ranks. They know nothing about where the job runs, so any launcher combines
with any backend (a local subprocess, a Slurm batch script, a Kubernetes pod); the backend
only runs the script the launcher's command is written into.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = [
    "LAUNCHERS",
    "Launcher",
    "MpiexecLauncher",
    "MpirunLauncher",
    "NoLauncher",
    "SrunLauncher",
    "default_mpiexec",
    "get_launcher",
]


def default_mpiexec(python: str | None = None) -> str:
    """The ``mpiexec`` next to ``python`` (default: this interpreter), as the mpich wheel installs it."""
    return os.path.join(os.path.dirname(python or sys.executable), "mpiexec")


def _check_ranks(ranks: int) -> int:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise InvalidJobSpecError(f"ranks must be a whole number of at least 1, got {ranks!r}")
    return ranks


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidJobSpecError(f"the program to launch must be a non-empty list of strings, got {argv!r}")
    return list(argv)


class Launcher(abc.ABC):
    """Turns ``argv`` into the command that starts it on ``ranks`` ranks."""

    name: ClassVar[str]

    @abc.abstractmethod
    def command(self, argv: list[str], ranks: int) -> list[str]:
        """The argv that runs ``argv`` on ``ranks`` ranks.

        :param argv: the program and its arguments (one rank's command line).
        :param ranks: how many ranks to start.
        """


@dataclasses.dataclass(frozen=True)
class NoLauncher(Launcher):
    """Run the program as it is: one rank, no MPI runtime."""

    name: ClassVar[str] = "none"

    def command(self, argv: list[str], ranks: int) -> list[str]:
        if _check_ranks(ranks) != 1:
            raise InvalidJobSpecError(
                f"launcher 'none' runs 1 rank, not {ranks}: use launcher='mpiexec', 'mpirun' or 'srun'"
            )
        return _check_argv(argv)


@dataclasses.dataclass(frozen=True)
class MpiexecLauncher(Launcher):
    """``mpiexec -n N argv`` (MPICH's Hydra; needs no root or oversubscription flags).

    :param path: the ``mpiexec`` to run; default the one next to this interpreter (the mpich
        wheel's), see :func:`default_mpiexec`.
    :param extra_args: more arguments placed before ``-n``.
    """

    path: str | None = None
    extra_args: tuple[str, ...] = ()
    name: ClassVar[str] = "mpiexec"

    def command(self, argv: list[str], ranks: int) -> list[str]:
        return [self.path or default_mpiexec(), *self.extra_args, "-n", str(_check_ranks(ranks)), *_check_argv(argv)]


@dataclasses.dataclass(frozen=True)
class MpirunLauncher(Launcher):
    """``mpirun -np N argv``, for Open MPI installations.

    :param path: the ``mpirun`` to run (default: the first on ``PATH``).
    :param allow_run_as_root: add Open MPI's ``--allow-run-as-root`` (containers running as root).
    :param oversubscribe: add ``--oversubscribe`` (more ranks than cores).
    :param extra_args: more arguments placed before ``-np``.
    """

    path: str = "mpirun"
    allow_run_as_root: bool = False
    oversubscribe: bool = False
    extra_args: tuple[str, ...] = ()
    name: ClassVar[str] = "mpirun"

    def command(self, argv: list[str], ranks: int) -> list[str]:
        flags = (["--allow-run-as-root"] if self.allow_run_as_root else []) + (
            ["--oversubscribe"] if self.oversubscribe else []
        )
        return [self.path, *flags, *self.extra_args, "-np", str(_check_ranks(ranks)), *_check_argv(argv)]


@dataclasses.dataclass(frozen=True)
class SrunLauncher(Launcher):
    """``srun --ntasks=N argv``: Slurm starts the ranks (inside an allocation only).

    :param path: the ``srun`` to run.
    :param mpi: the PMI plugin (``--mpi=pmi2``, ``pmix``...); ``None`` leaves Slurm's default.
    :param extra_args: more arguments placed before the program.
    """

    path: str = "srun"
    mpi: str | None = None
    extra_args: tuple[str, ...] = ()
    name: ClassVar[str] = "srun"

    def command(self, argv: list[str], ranks: int) -> list[str]:
        plugin = [f"--mpi={self.mpi}"] if self.mpi else []
        return [self.path, f"--ntasks={_check_ranks(ranks)}", *plugin, *self.extra_args, *_check_argv(argv)]


#: Launcher names and classes (``"auto"`` is resolved by the caller, which knows the target).
LAUNCHERS: dict[str, type[Launcher]] = {
    cls.name: cls for cls in (NoLauncher, MpiexecLauncher, MpirunLauncher, SrunLauncher)
}


def get_launcher(name: str, **options: Any) -> Launcher:
    """The launcher called ``name`` (``none``, ``mpiexec``, ``mpirun``, ``srun``).

    :param name: the launcher's name.
    :param options: its fields (``path``, ``extra_args``, ``mpi``, ``allow_run_as_root``...).
    """
    cls = LAUNCHERS.get(name)
    if cls is None:
        raise InvalidJobSpecError(f"unknown launcher {name!r}; choose one of {sorted(LAUNCHERS)}")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InvalidJobSpecError(f"launcher {name!r} takes no option(s) {unknown}; it takes {sorted(fields)}")
    if "extra_args" in options:
        options["extra_args"] = tuple(options["extra_args"])
    return cls(**options)
