"""The command line shared by every kernel: ``--config CFG --output DIR``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from simulation_kernels.common.config import load_config, write_json

__all__ = ["KernelInputError", "RunContext", "build_parser", "configure_threads", "run_cli"]


class KernelInputError(ValueError):
    """Bad input found while running (e.g. ``device='cuda'`` without a GPU): exit code 2, no traceback."""


class RunContext:
    """What a kernel's ``run`` receives besides its parameters.

    :param output: folder for fields and ``summary.json`` (exists on every rank).
    :param comm: MPI communicator or ``None``.
    """

    def __init__(self, output: Path, comm: Any | None) -> None:
        self.output = output
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()

    @property
    def is_root(self) -> bool:
        """True on rank 0, which prints progress and writes files."""
        return self.rank == 0


def build_parser(kernel: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of ``python -m simulation_kernels.<kernel>``."""
    parser = argparse.ArgumentParser(prog=f"python -m simulation_kernels.{kernel}", description=description)
    parser.add_argument("--config", required=True, help="JSON or YAML file of parameters")
    parser.add_argument("--output", required=True, help="folder for fields and summary.json")
    return parser


def configure_threads(ranks: int) -> None:
    """Share the cores among ranks unless ``NUMBA_NUM_THREADS`` says otherwise."""
    if ranks <= 1 or "NUMBA_NUM_THREADS" in os.environ:
        return
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // ranks)))


def run_cli(
    kernel: str,
    description: str,
    run: Callable[[dict[str, Any], RunContext], dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, validate the configuration, run the kernel and write ``summary.json``.

    Bad input (missing file, unknown keys, unstable step, rank count) ends with exit code 2 and
    one ``error:`` line on stderr, printed by rank 0 only.

    :param kernel: kernel name in :data:`simulation_kernels.params.KERNELS`.
    :param description: help text.
    :param run: ``run(params, ctx) -> summary``; the summary returned by rank 0 is written.
    :param argv: arguments (``sys.argv[1:]`` when ``None``).
    :return: the process exit code.
    """
    from simulation_kernels.common.decomp import get_world
    from simulation_kernels.params import validate

    args = build_parser(kernel, description).parse_args(argv)
    comm = get_world()
    ctx = RunContext(Path(args.output), comm)
    try:
        params = validate(kernel, load_config(args.config), ctx.size)
        if ctx.is_root:
            ctx.output.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        if ctx.is_root:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if comm is not None:
        comm.Barrier()
    configure_threads(ctx.size)
    start = time.perf_counter()
    try:
        summary = run(params, ctx)
    except KernelInputError as exc:
        if ctx.is_root:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    wall = time.perf_counter() - start
    if ctx.is_root:
        full = {"kernel": kernel, "ranks": ctx.size, "wall_s": round(wall, 4), **summary, "params": params}
        write_json(ctx.output / "summary.json", full)
        print(f"done: {kernel} in {wall:.2f} s, summary in {ctx.output / 'summary.json'}", flush=True)
    return 0
