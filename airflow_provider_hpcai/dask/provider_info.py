"""The ``dask`` connection type's entry in provider info (pure data; no Airflow or dask import).

``get_provider_info()`` adds :func:`dask_connection_type` to its ``connection-types`` list.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dask_connection_type"]


def _field(label: str, kind: str | list[str], description: str, default: Any = None,
           enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}
    if default is not None:
        schema["default"] = default
    if enum:
        schema["enum"] = enum
    return {"label": label, "schema": schema, "description": description}


def dask_connection_type() -> dict[str, Any]:
    """The connection form of :class:`~airflow_provider_hpcai.hooks.dask.DaskHook` (Airflow 3.2+ conn-fields)."""
    return {
        "connection-type": "dask",
        "hook-class-name": "airflow_provider_hpcai.hooks.dask.DaskHook",
        "hook-name": "Dask",
        "conn-fields": {
            "cluster": _field("Cluster", "string", "local (on the Airflow worker), address (an existing "
                              "scheduler), slurm (dask-jobqueue) or kubernetes (dask-kubernetes)",
                              default="local", enum=["local", "address", "slurm", "kubernetes"]),
            "address": _field("Scheduler address", "string", "address: e.g. tcp://scheduler:8786 (or use Host/Port)"),
            "n_workers": _field("Workers", "integer", "local, kubernetes: number of workers", default=2),
            "threads_per_worker": _field("Threads per worker", "integer", "local", default=1),
            "memory_limit": _field("Memory per worker", "string", "local: e.g. 2GiB", default="2GiB"),
            "slurm_conn_id": _field("Slurm connection", "string", "slurm: a Slurm connection with transport "
                                    "'local' (default slurm_default); its partition and work_dir are defaults"),
            "jobs": _field("Worker jobs", "integer", "slurm: Slurm jobs to submit (one worker each)", default=2),
            "cores": _field("Cores per job", "integer", "slurm", default=1),
            "memory": _field("Memory per job", "string", "slurm: e.g. 1GiB", default="1GiB"),
            "walltime": _field("Walltime", "string", "slurm: HH:MM:SS", default="00:30:00"),
            "queue": _field("Partition", "string", "slurm: default the Slurm connection's partition"),
            "account": _field("Account", "string", "slurm"),
            "python": _field("Worker Python", "string", "slurm: interpreter on the compute nodes "
                             "(default: this worker's)"),
            "job_extra_directives": _field("Extra #SBATCH options", "array", "slurm: long options such as "
                                           "--constraint=avx2; no spaces or shell characters"),
            "image": _field("Image", "string", "kubernetes: worker and scheduler image",
                            default="ghcr.io/dask/dask:latest"),
            "namespace": _field("Namespace", "string", "kubernetes: default [hpcai] kubernetes_namespace"),
            "wait_for_workers": _field("Wait for workers", "integer", "slurm, kubernetes: workers to wait for "
                                       "before the task's function runs", default=1),
            "worker_timeout": _field("Worker timeout (s)", "number", "slurm, kubernetes: fail with the jobs' "
                                     "state and logs if the workers have not joined by then", default=300),
            "adaptive": _field("Adaptive scaling", "object", "local, slurm, kubernetes: e.g. {\"minimum\": 1, "
                               "\"maximum\": 8, \"target_duration\": \"5s\", \"scale_down_wait\": \"60s\"} "
                               "(slurm: worker jobs); empty: a fixed size"),
            "dashboard_address": _field("Dashboard address", "string", "local, slurm: host:port the scheduler's "
                                        "dashboard listens on (127.0.0.1:0: this machine, a free port)",
                                        default="127.0.0.1:0"),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "password"],
            "relabeling": {"host": "Scheduler host (address)", "port": "Scheduler port (address)"},
            "placeholders": {"host": "scheduler.example.org", "port": "8786"},
        },
    }
