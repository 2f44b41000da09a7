"""Adaptive climate: storm cells found by a climate run drive per-storm rainfall analyses.

plan -> climate_run (the `climate` kernel on MPI ranks, mapped over one row so the backend is a run
param) -> detect_storms -> storm_rainfall (one mapped job per storm; zero when it stays dry, shown
as skipped) -> rainfall_totals (Dask: rain per storm and over the domain, maps) -> report.

Try a storm-free run: ``airflow dags test climate_adaptive -c '{"storm_threshold_mm_h": 1000}'``;
on Slurm: ``-c '{"backend": "slurm", "conn_id": "slurm_local", "workdir": "/shared/dir"}'``.

Params (sizes, backend, connection) are in the trigger form; the DAG is built by
:func:`airflow_provider_hpcai.casestudies.workflows.climate_adaptive` (also the factory of its template).
See docs/casestudies.md.
"""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import climate_adaptive

dag = climate_adaptive()
