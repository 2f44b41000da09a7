"""The simulation kernels' parameter tables and validator, shipped with the provider.

``SimulationOperator`` checks ``kernel_params`` against these before anything is submitted, on
an Airflow installation that does not have the kernels themselves (numba, mpi4py: the
``hpcai-simulation-kernels`` distribution, extra ``kernels``). Pure Python, no Airflow import.

In the repository ``specs.py`` and ``params.py`` are symbolic links to
``simulation_kernels/specs.py`` and ``simulation_kernels/params.py`` (one source, edited there);
building the wheel copies their content in, so an installed provider has them as plain files.
"""

from __future__ import annotations

from .params import KERNELS, SPECS, Param, defaults, schema, validate

__all__ = ["KERNELS", "SPECS", "Param", "defaults", "schema", "validate"]
