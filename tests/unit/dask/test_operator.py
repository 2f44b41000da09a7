"""DaskOperator and @dask_task: results to XCom, clusters closed on success, failure and kill."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_hpcai.hooks.dask import DaskHook
from airflow_provider_hpcai.operators.dask import DaskOperator, dask_task
from tests.unit.dask.support import THREADED, RecordingFactory, cluster_closed


class RecordingDaskOperator(DaskOperator):
    """Builds its hook with a recording factory so the test can see the cluster afterwards."""

    def __init__(self, *, extras: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extras = extras
        self.factory = RecordingFactory()

    def make_hook(self) -> DaskHook:
        return DaskHook(self.dask_conn_id, extras=self.extras, cluster_factories={"local": self.factory})


def histogram(client: Any, values: list[float], *, bins: int) -> dict[str, Any]:
    """A tiny map/reduce: per-batch histograms summed on the client."""
    import numpy as np

    batches = [values[i:i + 50] for i in range(0, len(values), 50)]
    parts = client.gather(client.map(lambda b: np.histogram(b, bins=bins, range=(0, 1))[0], batches))
    return {"counts": np.sum(parts, axis=0), "batches": len(batches)}


def test_result_goes_to_xcom_as_json_and_the_cluster_is_closed() -> None:
    values = [(i % 10) / 10 + 0.05 for i in range(200)]
    op = RecordingDaskOperator(task_id="hist", extras=THREADED, python_callable=histogram,
                               op_args=[values], op_kwargs={"bins": 10}, progress_interval=0.05)
    result = op.execute(context={})
    assert result == {"counts": [20] * 10, "batches": 4}
    assert cluster_closed(op.factory.built[0])


def test_failure_propagates_and_closes_the_cluster() -> None:
    def broken(client: Any) -> None:
        client.submit(lambda: {}["missing"]).result()

    op = RecordingDaskOperator(task_id="broken", extras=THREADED, python_callable=broken)
    with pytest.raises(KeyError, match="missing"):
        op.execute(context={})
    assert cluster_closed(op.factory.built[0])


def test_a_result_xcom_cannot_hold_fails_clearly_after_closing() -> None:
    op = RecordingDaskOperator(task_id="odd", extras=THREADED, python_callable=lambda client: client)
    with pytest.raises(TypeError, match="cannot be stored in XCom"):
        op.execute(context={})
    assert cluster_closed(op.factory.built[0])


def test_on_kill_closes_the_cluster_and_ends_the_task() -> None:
    def long_analysis(client: Any) -> int:
        return client.submit(time.sleep, 120).result()

    op = RecordingDaskOperator(task_id="long", extras={"cluster": "local", "n_workers": 1, "memory_limit": "512MiB"},
                               python_callable=long_analysis)
    ended: dict[str, Any] = {}

    def run() -> None:
        try:
            op.execute(context={})
        except BaseException as err:
            ended["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not (op._hook and op._hook._client) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    killed_at = time.monotonic()
    op.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - killed_at < 15
    assert "error" in ended
    assert cluster_closed(op.factory.built[0])


def test_op_args_and_op_kwargs_are_templated() -> None:
    assert set(DaskOperator.template_fields) == {"op_args", "op_kwargs"}


def test_dask_task_passes_the_client_first_and_returns_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DAG

    monkeypatch.setenv("AIRFLOW_CONN_DASK_UNIT_LOCAL",
                       '{"conn_type": "dask", "extra": {"cluster": "local", "n_workers": 2, "processes": false}}')

    @dask_task(dask_conn_id="dask_unit_local", progress_interval=0.1)
    def squares(client: Any, n: int, offset: int = 0) -> int:
        return sum(client.gather(client.map(lambda x: (x + offset) ** 2, range(n))))

    with DAG("dask_task_unit", schedule=None):
        task = squares(10, offset=1).operator
    assert task.dask_conn_id == "dask_unit_local"
    assert task.op_args == [10] and task.op_kwargs == {"offset": 1}
    assert task.execute(context={}) == sum(x * x for x in range(1, 11))


def test_dask_task_rejects_a_function_without_a_client_parameter() -> None:
    with pytest.raises(TypeError, match="must take the Dask client first"):
        @dask_task
        def no_client(*, n: int) -> int:
            return n


def test_dask_task_still_checks_the_remaining_arguments() -> None:
    from airflow.sdk import DAG

    @dask_task
    def needs_two(client: Any, a: int, b: int) -> int:
        return a + b

    with DAG("dask_task_args", schedule=None), pytest.raises(TypeError, match="b"):
        needs_two(1)


def test_a_dag_file_callable_sends_its_functions_by_value_and_the_module_comes_back() -> None:
    """A callable from a DAG-file module: hidden from sys.modules while it runs (workers get its code), then back."""
    import sys
    import types

    name = "unusual_prefix_00000000000000000000000000000000000000aa_op_dag"
    module = types.ModuleType(name)
    exec("import sys\n\ndef double(x):\n    return 2 * x\n\n"  # noqa: S102
         "def total(client):\n    hidden = __name__ not in sys.modules\n"
         "    return {'sum': sum(client.gather(client.map(double, range(5)))), 'hidden': hidden}\n", module.__dict__)
    sys.modules[name] = module
    try:
        op = RecordingDaskOperator(task_id="dagfile", extras=THREADED, python_callable=module.total,
                                   progress_interval=0.05)
        assert op.execute(context={}) == {"sum": 20, "hidden": True}
        assert sys.modules[name] is module
    finally:
        sys.modules.pop(name, None)
