"""Extra links from a task instance to its job, from a URL template on the connection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai.backends.base import JobRef
from airflow_provider_hpcai.exceptions import ConfigurationError
from airflow_provider_hpcai.get_provider_info import get_provider_info
from airflow_provider_hpcai.operators.kubernetes import KubernetesJobStageOperator
from airflow_provider_hpcai.operators.links import KubernetesJobLink, SlurmJobLink, render_job_url
from airflow_provider_hpcai.operators.simulation import SimulationOperator
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

OOD = "https://ondemand.example/pun/sys/dashboard/activejobs?jobid={job_id}&cluster={cluster}"


class Key:
    """A task instance key, as Airflow passes it to ``get_link``."""

    def __init__(self, task_id: str) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number = "d", task_id, "r", -1, 1


@pytest.fixture()
def xcom(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], Any]:
    """XCom values by (task_id, key): what the operators pushed, read back by the links."""
    from airflow.sdk.execution_time.xcom import XCom

    store: dict[tuple[str, str], Any] = {}
    monkeypatch.setattr(XCom, "get_value", classmethod(lambda cls, *, ti_key, key: store.get((ti_key.task_id, key))))
    return store


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, **fields}))


def test_template_values_are_url_quoted_and_cannot_change_the_url():
    url = render_job_url(OOD, {"job_id": "42&jobid=1#x", "cluster": "a b/../c"})
    assert url == ("https://ondemand.example/pun/sys/dashboard/activejobs?jobid=42%26jobid%3D1%23x"
                   "&cluster=a%20b%2F..%2Fc")


@pytest.mark.parametrize("template", [
    "javascript:alert({job_id})",
    "ftp://files.example/{job_id}",
    "{cluster}/jobs/{job_id}",  # the scheme and host may not come from a value
    "https://{cluster}.example/jobs/{job_id}",
    "https://dash.example/{job_id}/{password}",  # unknown placeholder
    "https://dash.example/{job_id",  # malformed
    "",
])
def test_bad_templates_are_refused_with_what_is_allowed(template):
    with pytest.raises(ConfigurationError, match="job_url_template"):
        render_job_url(template, {"job_id": "1", "cluster": "c"})


def test_slurm_link_reads_the_job_id_xcom_and_the_connections_template(monkeypatch, xcom):
    _conn(monkeypatch, "slurm_ood", "slurm", host="hpc one", extra={"transport": "local", "job_url_template": OOD})
    with DAG("d", schedule=None):
        op = SlurmJobOperator(task_id="job", script="true", slurm_conn_id="slurm_ood")
    assert [link.name for link in op.operator_extra_links] == ["Slurm job"]
    link = op.operator_extra_links[0]
    assert link.get_link(op, ti_key=Key("job")) == ""  # nothing submitted yet: a disabled link
    xcom[("job", "job_id")] = "1234"
    assert link.get_link(op, ti_key=Key("job")) == (
        "https://ondemand.example/pun/sys/dashboard/activejobs?jobid=1234&cluster=hpc%20one")


def test_no_template_or_a_bad_one_gives_an_empty_link(monkeypatch, xcom, caplog):
    _conn(monkeypatch, "slurm_plain", "slurm", extra={"transport": "local"})
    _conn(monkeypatch, "slurm_bad", "slurm", extra={"transport": "local", "job_url_template": "file:///{job_id}"})
    xcom[("job", "job_id")] = "7"
    with DAG("d", schedule=None):
        plain = SlurmJobOperator(task_id="job", script="true", slurm_conn_id="slurm_plain")
        bad = SlurmJobOperator(task_id="job2", script="true", slurm_conn_id="slurm_bad")
    xcom[("job2", "job_id")] = "8"
    assert SlurmJobLink().get_link(plain, ti_key=Key("job")) == ""
    assert SlurmJobLink().get_link(bad, ti_key=Key("job2")) == ""
    assert "http:// or https://" in caplog.text


def test_kubernetes_link_names_the_job_namespace_and_kind(monkeypatch, xcom):
    template = "https://console.example/c/{cluster}/api/v1/namespaces/{namespace}/{kind}/{job_name}"
    _conn(monkeypatch, "k8s_console", "kubernetes", extra={"job_url_template": template, "cluster": "gpu-east"})
    with DAG("d", schedule=None):
        op = KubernetesJobStageOperator(task_id="stage", image="python:3.11", script="true",
                                        kubernetes_conn_id="k8s_console", namespace="hpc")
    assert [link.name for link in op.operator_extra_links] == ["Kubernetes job"]
    xcom[("stage", "job_id")] = "hpcai-stage-1a2b"
    assert KubernetesJobLink().get_link(op, ti_key=Key("stage")) == (
        "https://console.example/c/gpu-east/api/v1/namespaces/hpc/Job/hpcai-stage-1a2b")
    op._ref = JobRef("kubernetes", "hpcai-stage-1a2b", extra={"namespace": "team-a", "kind": "MPIJob"})
    assert KubernetesJobLink().get_link(op, ti_key=Key("stage")).endswith("/namespaces/team-a/MPIJob/hpcai-stage-1a2b")


def test_a_simulation_gets_the_link_of_the_backend_it_runs_on(monkeypatch, xcom):
    _conn(monkeypatch, "slurm_sim", "slurm", host="c1", extra={"transport": "local", "job_url_template": OOD})
    with DAG("d", schedule=None):
        on_slurm = SimulationOperator(task_id="sim", kernel="heat", backend="slurm", conn_id="slurm_sim")
    xcom[("sim", "job_id")] = "99"
    links = {link.name: link for link in on_slurm.operator_extra_links}
    assert links["Slurm job"].get_link(on_slurm, ti_key=Key("sim")).endswith("jobid=99&cluster=c1")
    assert links["Kubernetes job"].get_link(on_slurm, ti_key=Key("sim")) == ""


def test_links_are_registered_and_reach_the_ui_through_the_serialised_dag():
    from airflow.serialization.serialized_objects import DagSerialization

    info = get_provider_info()
    assert {"airflow_provider_hpcai.operators.links.SlurmJobLink",
            "airflow_provider_hpcai.operators.links.KubernetesJobLink"} <= set(info["extra-links"])
    with DAG("d", schedule=None) as dag:
        SlurmJobOperator(task_id="job", script="true")
        SlurmJobOperator.partial(task_id="sweep", script="true").expand(job_resources=[{"memory": "1G"}])
    again = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    for task_id in ("job", "sweep"):
        # the UI reads each link from the XCom key the worker stored it under at the end of the task
        assert {k: v.xcom_key for k, v in again.get_task(task_id).operator_extra_link_dict.items()} == {
            "Slurm job": "_link_SlurmJobLink"}
