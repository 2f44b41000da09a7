"""Numerical kernels run as stages of HPC-AI workflows.

Never imported by DAG files or by the provider at parse time: stages run each kernel as a
command, ``python -m simulation_kernels.<name> --config CFG.json --output DIR`` (or under
``mpiexec -n N python -m mpi4py -m simulation_kernels.<name> ...``). Only
:mod:`simulation_kernels.params` is meant to be imported by the provider, lazily, to
validate parameters before anything is submitted; it imports no numerical library.
"""

from __future__ import annotations

__all__ = ["KERNEL_MODULES"]

#: kernel name -> module run with ``python -m``.
KERNEL_MODULES: dict[str, str] = {
    "climate": "simulation_kernels.climate",
    "seismic": "simulation_kernels.seismic",
    "assembly_line": "simulation_kernels.assembly_line",
}
