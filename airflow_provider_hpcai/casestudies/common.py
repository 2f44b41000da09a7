"""Small helpers shared by the case studies: backend choice, result folders, JSON files."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.backends import BACKENDS
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["BACKEND_CHOICES", "backend_kwargs", "read_json", "results_folder", "results_root", "write_json"]

#: The registered backends (:data:`airflow_provider_hpcai.backends.BACKENDS`), in registry order.
BACKEND_CHOICES = tuple(BACKENDS)
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def backend_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The job operators' ``backend``, ``conn_id`` and ``workdir`` from a case study's DAG params.

    :param params: the run's params: ``backend`` (a registered backend: ``local``, ``slurm``...), ``conn_id``
        (empty: the backend's default connection) and ``workdir`` (empty: the backend's default).
    :raises InvalidJobSpecError: on an unknown backend.
    """
    backend = str(params.get("backend") or "local").strip()
    if backend not in BACKEND_CHOICES:
        raise InvalidJobSpecError(f"backend {backend!r} is not one of {', '.join(BACKEND_CHOICES)}: "
                                  "set the DAG param 'backend' to one of them")
    conn_id = str(params.get("conn_id") or "").strip() or None
    workdir = str(params.get("workdir") or "").strip() or None
    if workdir is not None and not os.path.isabs(workdir):
        raise InvalidJobSpecError(f"workdir {workdir!r} must be an absolute path (or empty for the backend's default)")
    return {"backend": backend, "conn_id": conn_id, "workdir": workdir}


def mapped_results(values: Any) -> list[Any]:
    """The results of a mapped task as a list, read by index.

    ``list()`` on Airflow's lazy XCom sequence reads one item past the end to find it, and the
    Task SDK logs that miss as ``[error] XCom not found``: a successful run would look failed.
    ``len()`` asks for the count first, so nothing is read that is not there.
    """
    if values is None:
        return []
    return [values[i] for i in range(len(values))]


def results_root(value: str | None = None) -> str:
    """Where case studies write their plots and JSON: ``value`` (the DAG param), else
    ``[hpcai] results_dir``, else ``$HPCAI_RESULTS_DIR``, else ``$AIRFLOW_HOME/hpcai/results`` (absolute)."""
    from airflow_provider_hpcai import config

    root = (value or "").strip() or (config.get("results_dir") or "").strip() \
        or os.environ.get("HPCAI_RESULTS_DIR", "").strip()
    if not root:
        root = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "hpcai", "results")
    return os.path.abspath(os.path.expanduser(root))


def results_folder(root: str | None, dag_id: str, run_id: str) -> str:
    """``<root>/<dag_id>/<run_id>`` with unsafe characters replaced (created)."""
    parts = [_SAFE.sub("_", p).strip(".") or "_" for p in (dag_id, run_id)]
    path = os.path.join(results_root(root), *parts)
    os.makedirs(path, exist_ok=True)
    return path


def _clean(value: Any) -> Any:
    """Plain JSON: numpy scalars/arrays to Python, non-finite floats to ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str, value: Any) -> str:
    """Write ``value`` as JSON (atomically: temp file then rename); returns ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(_clean(value), handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def clean(value: Any) -> Any:
    """:func:`_clean` for callers that return results to XCom."""
    return _clean(value)
