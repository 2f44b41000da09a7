"""``python -m simulation_kernels.seismic --config CFG.json --output DIR``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from simulation_kernels.common.cli import run_cli
from simulation_kernels.params import KERNELS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the seismic kernel; see :mod:`simulation_kernels.seismic.model`."""
    from simulation_kernels.seismic.model import run

    return run_cli("seismic", KERNELS["seismic"], run, argv)


if __name__ == "__main__":
    sys.exit(main())
