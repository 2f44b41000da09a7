"""The simulation kernels' parameter tables and validator, shipped with the provider.

``SimulationOperator`` checks ``kernel_params`` against these before anything is submitted, on
an Airflow installation that does not have the kernels themselves (numba, mpi4py: the
``hpcai-simulation-kernels`` distribution, extra ``kernels``). Pure Python, no Airflow import.

``specs.py`` and ``params.py`` are copies of ``simulation_kernels/specs.py`` and
``simulation_kernels/params.py``, where they are maintained: edit those, then run
``scripts/sync-kernel-params`` (a unit test fails while the copies differ).
"""

from __future__ import annotations

from .params import KERNELS, SPECS, Param, defaults, schema, validate

__all__ = ["KERNELS", "SPECS", "Param", "defaults", "schema", "validate"]
