"""Example: simulation kernels as Airflow tasks on the worker itself (the local backend).

Shows:

* a seismic run (8th-order acoustic wave over a soft-soil basin) on 2 MPI ranks, with a
  memory and time limit enforced like Slurm's;
* a regional climate run on 1 rank, its parameters templated from the DAG's params;
* a report task reading both kernels' summaries from XCom.

The same tasks run on Slurm or Kubernetes with ``backend="slurm"`` / ``"kubernetes"`` and a
``conn_id``; nothing else changes. Set ``[hpcai] local_work_dir`` (or
``AIRFLOW__HPCAI__LOCAL_WORK_DIR``) to choose where the job folders go.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from airflow_provider_hpcai.operators.simulation import SimulationOperator


@dag(
    dag_id="hpcai_simulation_example",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hpcai", "simulation", "example"],
    params={"climate_steps": 60},
    render_template_as_native_obj=True,  # so "{{ params.climate_steps }}" renders as a number
)
def hpcai_simulation_example():
    quake = SimulationOperator(
        task_id="seismic_basin",
        kernel="seismic",
        ranks=2,
        backend="local",
        kernel_params={"nx": 128, "nz": 64, "dx_m": 10.0, "steps": 120, "sponge_cells": 16,
                       "velocity_model": "basin", "basin_width_m": 600.0, "basin_depth_m": 150.0,
                       "progress_lines": 4},
        job_resources={"memory": "1500M", "time_limit": "00:10:00"},
        device="cpu",
        poll_interval=1,
    )

    weather = SimulationOperator(
        task_id="regional_climate",
        kernel="climate",
        backend="local",
        kernel_params={"nx": 64, "ny": 64, "steps": "{{ params.climate_steps }}", "progress_lines": 4},
        job_resources={"memory": "1G", "time_limit": "00:10:00"},
        poll_interval=1,
    )

    @task
    def report(seismic: dict, climate: dict) -> str:
        s, c = seismic["summary"], climate["summary"]
        line = (f"seismic on {s['ranks']} ranks: peak surface velocity {s['pgv_surface_max']:.3g} m/s at "
                f"x={s['pgv_surface_max_x_m']:.0f} m (job {seismic['job']['state']}, peak memory "
                f"{seismic['job']['max_rss_bytes'] / 2**20:.0f} MiB); climate: {c['steps']} steps, "
                f"{c['n_storms']} storm(s), max rain {c['rain_max_accum_mm']:.1f} mm")
        print(line)
        return line

    report(quake.output, weather.output)


hpcai_simulation_example()
