"""Manufacturing optimisation: Dask sweep, statsmodels surrogate, recommendation, confirmation.

plan -> sweep (Dask: replications of the line model over buffer sizes x crews x material
shortages) -> surrogate (OLS per scenario; the configuration with the best expected margin) ->
plan_confirmation -> confirm (one mapped `assembly_line` run per scenario) -> check -> report.

Params (sizes, backend, connection) are in the trigger form; the DAG is built by
:func:`airflow_provider_hpcai.casestudies.workflows.manufacturing_optimization` (also the factory of its template).
See docs/casestudies.md.
"""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import manufacturing_optimization

dag = manufacturing_optimization()
