"""``@task.dask``: the provider registers its TaskFlow decorator with Airflow (provider info)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hpcai.get_provider_info import get_provider_info
from airflow_provider_hpcai.operators.dask import DaskOperator, dask_task


def test_provider_info_registers_the_dask_decorator() -> None:
    assert {"name": "dask", "class-name": "airflow_provider_hpcai.operators.dask.dask_task"} in (
        get_provider_info()["task-decorators"]
    )


def test_task_dask_builds_and_runs_a_dask_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DAG, task

    assert task.dask is dask_task
    monkeypatch.setenv("AIRFLOW_CONN_DASK_DECORATOR",
                       '{"conn_type": "dask", "extra": {"cluster": "local", "n_workers": 1, "processes": false}}')

    @task.dask(dask_conn_id="dask_decorator", progress_interval=0.1)
    def total(client: Any, n: int) -> int:
        return sum(client.gather(client.map(lambda x: x + 1, range(n))))

    with DAG("task_dask_unit", schedule=None):
        op = total(4).operator
    assert isinstance(op, DaskOperator)
    assert op.custom_operator_name == "@task.dask"
    assert op.op_args == [4] and op.dask_conn_id == "dask_decorator"
    assert op.execute(context={}) == 10
