"""Execution backends, by name. Each is imported only when a task uses it."""

from __future__ import annotations

import importlib
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

#: name -> "module:Class". Adding a backend: one module, one line here, one line in the contract tests.
BACKENDS: dict[str, str] = {
    "local": "airflow_provider_hpcai.backends.local:LocalBackend",
    "slurm": "airflow_provider_hpcai.backends.slurm:SlurmBackend",
    "kubernetes": "airflow_provider_hpcai.backends.kubernetes:KubernetesBackend",
    "gridengine": "airflow_provider_hpcai.backends.gridengine:GridEngineBackend",
}


def backend_class(name: str) -> type:
    """The class of the backend called ``name`` (its module is imported now)."""
    if name not in BACKENDS:
        raise InvalidJobSpecError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


def get_backend(name: str, conn_id: str | None = None, **options: Any):  # type: ignore[no-untyped-def]
    """Instantiate the backend called ``name``."""
    return backend_class(name)(conn_id, **options)
