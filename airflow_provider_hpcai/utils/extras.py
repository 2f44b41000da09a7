"""Optional dependencies (the distribution's extras), imported only where a task needs them.

The provider's core installs with Airflow alone; Kubernetes, SSH, Dask, the resource advisor and
the simulation kernels come with extras. Code that needs one calls :func:`require_extra` (or
turns an ``ImportError`` into :func:`missing_extra`) so that a missing extra says what to install
instead of a bare ``No module named 'distributed'``.
"""

from __future__ import annotations

import importlib

from airflow_provider_hpcai.exceptions import MissingExtraError

__all__ = ["DISTRIBUTION", "EXTRAS", "MissingExtraError", "missing_extra", "require_extra"]

DISTRIBUTION = "airflow-provider-hpcai"

#: extra -> what it brings (for messages and docs/install.md).
EXTRAS: dict[str, str] = {
    "kubernetes": "The Kubernetes backend (apache-airflow-providers-cncf-kubernetes)",
    "ssh": "Slurm over SSH and job output over SSH (apache-airflow-providers-ssh)",
    "dask": "DaskOperator, @task.dask and dask connections (dask.distributed, dask-jobqueue)",
    "advisor": "The resource advisor's training and models (MLflow, statsmodels, pandas, matplotlib)",
    "kernels": "The simulation kernels run by SimulationOperator (hpcai-simulation-kernels)",
    "mpi": "MPI in the Airflow environment (mpi4py, mpich's mpiexec)",
    "openlineage": "Lineage events from the job operators (apache-airflow-providers-openlineage)",
}


def missing_extra(extra: str, err: ImportError | None = None, *, feature: str | None = None) -> MissingExtraError:
    """The error to raise when ``extra`` is not installed (``err``: the ``ImportError`` seen)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    module = getattr(err, "name", None)
    what = feature or EXTRAS[extra]
    text = f"{what} needs the '{extra}' extra of {DISTRIBUTION}"
    if module:
        text += f" (module {module!r} is not installed)"
    text += f": pip install '{DISTRIBUTION}[{extra}]' (with Airflow's constraints file, see docs/install.md)"
    return MissingExtraError(text, extra=extra, name=module)


def require_extra(extra: str, *modules: str, feature: str | None = None) -> None:
    """Import ``modules`` (cheap when already imported) or raise :class:`MissingExtraError` naming ``extra``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise missing_extra(extra, err, feature=feature) from err
