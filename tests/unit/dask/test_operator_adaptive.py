"""DaskOperator with adaptive scaling: the task's tag, the dashboard link while it runs, usage in XCom."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hpcai.dask.errors import DaskConfigurationError
from airflow_provider_hpcai.dask.links import DASHBOARD_XCOM_KEY, DaskDashboardLink, safe_dashboard_url
from airflow_provider_hpcai.hooks.dask import DaskHook
from airflow_provider_hpcai.operators.dask import DaskOperator
from airflow_provider_hpcai.spec import make_tag


class StandInTaskInstance:
    dag_id, task_id, run_id, map_index = "d", "t", "manual__1", 3

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class LocalAdaptiveOperator(DaskOperator):
    def make_hook(self) -> DaskHook:
        self.hook_args = {"adaptive": self.adaptive, "tag": self.task_tag}
        return DaskHook(extras={"cluster": "local", "processes": False, "memory_limit": "512MiB"},
                        adaptive=self.adaptive, tag=self.task_tag)


def test_adaptive_task_pushes_its_dashboard_link_and_usage() -> None:
    seen: dict[str, Any] = {}

    def work(client: Any) -> int:
        seen["link_while_running"] = dict(ti.xcom)
        return sum(client.gather(client.map(lambda x: x * 2, range(20))))

    ti = StandInTaskInstance()
    op = LocalAdaptiveOperator(task_id="t", python_callable=work, progress_interval=0.1,
                               adaptive={"minimum": 1, "maximum": 2, "scale_down_wait": "1s", "interval": "0.5s"})
    assert op.execute({"ti": ti}) == 380
    assert op.hook_args["tag"] == make_tag("d", "t", "manual__1", 3)
    link = seen["link_while_running"][DASHBOARD_XCOM_KEY]
    assert link.startswith("http://127.0.0.1:") and seen["link_while_running"][DaskDashboardLink().xcom_key] == link
    usage = ti.xcom["dask_usage"]
    assert usage["workers_started"] >= 1 and usage["worker_hours"] > 0


def test_operator_rejects_bad_adaptive_bounds_when_the_dag_is_parsed() -> None:
    with pytest.raises(DaskConfigurationError, match=r"task 'bad': argument 'adaptive': 'maximum' \(1\) is smaller"):
        DaskOperator(task_id="bad", python_callable=lambda client: None, adaptive={"minimum": 2, "maximum": 1})


def test_without_a_task_instance_there_is_no_tag() -> None:
    op = LocalAdaptiveOperator(task_id="t", python_callable=lambda client: 1)
    assert op.execute({}) == 1 and op.hook_args["tag"] is None


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8787/status", "http://127.0.0.1:8787/status"),
    ("javascript:alert(1)", ""), ("http:///nohost", ""), (None, ""), (42, ""),
])
def test_only_http_dashboard_urls_become_links(url: Any, expected: str) -> None:
    assert safe_dashboard_url(url) == expected


def test_the_dashboard_link_survives_dag_serialisation() -> None:
    from airflow.sdk import DAG

    from airflow_provider_hpcai.operators.dask import dask_task

    with DAG("dask_link_dag", schedule=None) as dag:
        DaskOperator(task_id="classic", python_callable=lambda client: None)
        dask_task(lambda client: None, task_id="decorated")()
    from airflow.serialization.serialized_objects import DagSerialization

    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for task_id in ("classic", "decorated"):
        assert "Dask dashboard" in restored.get_task(task_id).extra_links
