"""The ``[hpcai]`` configuration section: declared once, read in one place.

Values come from ``airflow.cfg`` / ``AIRFLOW__HPCAI__<KEY>`` environment variables through
Airflow's configuration, with the defaults declared here.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CONFIG_OPTIONS", "get", "get_bool", "get_float", "get_int"]


def _option(description: str, kind: str, default: Any, example: Any = None) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": kind,
        "example": example,
        "default": None if default is None else str(default),
    }


CONFIG_OPTIONS: dict[str, dict[str, Any]] = {
    "default_deferrable": _option("Whether operators defer while their job waits or runs.", "boolean", "True"),
    "poll_interval": _option("Seconds between batched status queries per Slurm connection.", "float", "10"),
    "max_poll_interval": _option("Longest interval the poller backs off to while nothing changes.", "float", "60"),
    "retry_attempts": _option("Attempts of a status query before a controller outage fails the wait.", "integer", "8"),
    "outage_budget": _option(
        "Seconds a waiting task tolerates an unreachable controller before failing with a clear error.", "float", "600"
    ),
    "stream_logs": _option("Copy job output into the task log while the job runs.", "boolean", "True"),
    "default_backend": _option("Backend of SimulationOperator when none is given.", "string", "local", "slurm"),
    "local_work_dir": _option("Where the local backend runs jobs.", "string", None, "/var/lib/hpcai/jobs"),
    "advisor_mode": _option("Resource advisor: off, advise, estimate (sets --time-min only) or enforce.", "string", "advise", "enforce"),
    "advisor_home": _option("Folder for job history and the cached champion model.", "string", None, "/var/lib/hpcai"),
    "mlflow_tracking_uri": _option("MLflow tracking URI for the advisor.", "string", None, "sqlite:////var/lib/hpcai/mlflow.db"),
    "results_dir": _option(
        "Where the case-study workflows write plots and JSON (empty: $HPCAI_RESULTS_DIR, else "
        "$AIRFLOW_HOME/hpcai/results).", "string", None, "/data/hpcai/results"),
    "templates_dir": _option("Folder of the workflow template repository.", "string", None, "/var/lib/hpcai/templates"),
    "templates_backend": _option("Template repository storage: local or git.", "string", "local", "git"),
    "templates_git_remote": _option("Remote the git template backend pushes to.", "string", None,
                                    "git@example.org:hpc/templates.git"),
    "template_factory_allowlist": _option("Module prefixes template DAG factories may come from (comma-separated).",
                                          "string", "airflow_provider_hpcai.,dags_templates.", None),
    "kubernetes_namespace": _option("Namespace of Kubernetes jobs.", "string", None, "hpc"),
    "kubernetes_image": _option("Default image of Kubernetes jobs.", "string", None, "ghcr.io/example/hpcai:0.1.0"),
    "kubernetes_gpu_priority_class": _option("Priority class of GPU jobs on Kubernetes.", "string", None, "hpcai-gpu"),
}


def get(key: str, fallback: str | None = None) -> str | None:
    """Read ``[hpcai] key``; the declared default when unset (and outside Airflow, the env var)."""
    if key not in CONFIG_OPTIONS:
        raise KeyError(f"[hpcai] has no option {key!r}; known: {sorted(CONFIG_OPTIONS)}")
    default = CONFIG_OPTIONS[key]["default"] if fallback is None else fallback
    try:
        from airflow.configuration import conf

        return conf.get("hpcai", key, fallback=default)
    except Exception:  # outside an Airflow installation (kernels, CLI without airflow.cfg)
        return os.environ.get(f"AIRFLOW__HPCAI__{key.upper()}", default)


def get_bool(key: str) -> bool:
    return str(get(key)).strip().lower() in {"1", "true", "yes", "on"}


def get_float(key: str) -> float:
    return float(get(key) or 0)


def get_int(key: str) -> int:
    return int(float(get(key) or 0))
