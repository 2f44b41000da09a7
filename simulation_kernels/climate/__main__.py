"""``python -m simulation_kernels.climate --config CFG.json --output DIR``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from simulation_kernels.common.cli import run_cli
from simulation_kernels.params import KERNELS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the climate kernel; see :mod:`simulation_kernels.climate.model`."""
    from simulation_kernels.climate.model import run

    return run_cli("climate", KERNELS["climate"], run, argv)


if __name__ == "__main__":
    sys.exit(main())
