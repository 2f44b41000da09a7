"""Seismic risk: an ensemble of earthquake scenarios, aggregated into hazard curves and a risk map.

plan -> scenario (one mapped `seismic` run per source x magnitude x soil model) -> hazard (Dask:
exceedance probabilities per site and over the cross-section, plots) -> report.

Params (sizes, backend, connection) are in the trigger form; the DAG is built by
:func:`airflow_provider_hpcai.casestudies.workflows.seismic_risk` (also the factory of its template).
See docs/casestudies.md.
"""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import seismic_risk

dag = seismic_risk()
