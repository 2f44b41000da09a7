"""A missing extra fails where it is needed, with an error naming the extra to install.

Each test hides the extra's modules (``sys.modules[name] = None`` makes their import fail) and
runs the code path that needs them. tests/integration/test_packaging.py checks the same against
a real install without extras.
"""

from __future__ import annotations

import sys

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai.exceptions import HpcAiError, MissingExtraError
from airflow_provider_hpcai.utils.extras import EXTRAS, missing_extra, require_extra


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def assert_names(err: pytest.ExceptionInfo[MissingExtraError], extra: str) -> None:
    assert err.value.extra == extra
    assert f"pip install 'airflow-provider-hpcai[{extra}]'" in str(err.value)


def test_require_extra_names_the_extra_and_the_module(monkeypatch) -> None:
    hide(monkeypatch, "distributed")
    with pytest.raises(MissingExtraError) as err:
        require_extra("dask", "distributed")
    assert_names(err, "dask")
    assert "'distributed'" in str(err.value)
    # Both a provider error and an ImportError: fallbacks on ImportError keep working.
    assert isinstance(err.value, HpcAiError) and isinstance(err.value, ImportError)


def test_require_extra_passes_when_installed() -> None:
    require_extra("dask", "json")


def test_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown extra"):
        missing_extra("gpu")
    assert set(EXTRAS) == {"kubernetes", "ssh", "dask", "advisor", "kernels", "mpi", "openlineage"}


def test_dask_hook_without_dask(monkeypatch) -> None:
    from airflow_provider_hpcai.hooks.dask import DaskHook

    hide(monkeypatch, "distributed")
    hook = DaskHook(extras={"cluster": "local", "n_workers": 1})
    with pytest.raises(MissingExtraError) as err, hook.get_client():
        pass
    assert_names(err, "dask")


def test_dask_jobqueue_without_dask(monkeypatch) -> None:
    from airflow_provider_hpcai.hooks import dask as dask_hook

    dask_hook._slurm_cluster_class.cache_clear()
    hide(monkeypatch, "dask_jobqueue", "dask_jobqueue.slurm")
    try:
        with pytest.raises(MissingExtraError) as err:
            dask_hook._slurm_cluster_class()
    finally:
        dask_hook._slurm_cluster_class.cache_clear()
    assert_names(err, "dask")


def test_kubernetes_hooks_without_the_cncf_provider(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "airflow_provider_hpcai.kubernetes.hooks", raising=False)
    hide(monkeypatch, "airflow.providers.cncf.kubernetes.hooks.kubernetes")
    with pytest.raises(MissingExtraError) as err:
        import airflow_provider_hpcai.kubernetes.hooks  # noqa: F401
    assert_names(err, "kubernetes")


def test_pod_classification_without_the_cncf_provider(monkeypatch) -> None:
    from airflow_provider_hpcai.kubernetes.classify import image_problem

    hide(monkeypatch, "airflow.providers.cncf.kubernetes.utils.pod_manager")
    pod = {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "c", "state": {}}]}}
    with pytest.raises(MissingExtraError) as err:
        image_problem([pod])
    assert_names(err, "kubernetes")


def test_slurm_over_ssh_without_the_ssh_provider(monkeypatch) -> None:
    from airflow_provider_hpcai.slurm.cli_transport import SshRunner

    hide(monkeypatch, "airflow.providers.ssh.hooks.ssh")
    with pytest.raises(MissingExtraError) as err:
        SshRunner("slurm_head")._connect()
    assert_names(err, "ssh")
    assert "slurm_head" in str(err.value)


def test_local_kernel_without_the_kernels(monkeypatch) -> None:
    from airflow_provider_hpcai.operators.simulation import SimulationOperator

    hide(monkeypatch, "simulation_kernels")
    with DAG("extras", schedule=None):
        op = SimulationOperator(task_id="wave", kernel="seismic", backend="local",
                                kernel_params={"nx": 64, "nz": 64, "steps": 10})
    with pytest.raises(MissingExtraError) as err:
        op._check_kernels_installed()
    assert_names(err, "kernels")
    # A parse needs no kernels: the parameters are validated against the provider's own tables.
    op._validate()


def test_advisor_registration_without_mlflow(monkeypatch, tmp_path) -> None:
    from airflow_provider_hpcai.advisor.registry import register_model

    hide(monkeypatch, "mlflow")
    with pytest.raises(MissingExtraError) as err:
        register_model(object(), {}, home=str(tmp_path))  # type: ignore[arg-type]
    assert_names(err, "advisor")


def test_local_mpi_ranks_without_mpi(monkeypatch) -> None:
    from airflow_provider_hpcai.operators.simulation import SimulationOperator

    hide(monkeypatch, "mpi4py")
    with DAG("extras_mpi", schedule=None):
        op = SimulationOperator(task_id="wave", kernel="seismic", backend="local", ranks=2, launcher="mpiexec",
                                kernel_params={"nx": 64, "nz": 64, "steps": 10})
    with pytest.raises(MissingExtraError) as err:
        op._check_kernels_installed()
    assert_names(err, "mpi")
