"""OpenLineage from a Slurm job task: inlets/outlets, and a run facet naming the job and its resources."""

from __future__ import annotations

import json
import sys

import pytest
from airflow.sdk import DAG, Asset

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.lineage import job_facet_fields
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from tests.unit.slurm.test_slurm_operator import DictStore, FakeTI, cluster, context, defer, fire  # noqa: F401

GIB = 1024**3


def _op(monkeypatch: pytest.MonkeyPatch, **kwargs) -> SlurmJobOperator:
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_LINEAGE", json.dumps(
        {"conn_type": "slurm", "host": "hpc-one", "extra": {"transport": "local"}}))
    fields = {"task_id": "train", "script": "python train.py\n", "poll_interval": 0.001, "deferrable": True,
              "slurm_conn_id": "slurm_lineage", "job_resources": Resources(ntasks=4, memory="1G", time_limit=600),
              "inlets": [Asset("s3://bucket/input/mesh.h5")], "outlets": [Asset("s3://bucket/results/run1")]}
    fields.update(kwargs)
    with DAG("hpc_dag", schedule=None):
        return SlurmJobOperator(**fields)


def test_facet_fields_from_a_job_result_are_plain_data():
    ref = {"backend": "slurm", "job_id": "17", "extra": {"workdir": "/scratch/w", "conn_id": "c"}}
    result = {"state": "COMPLETED", "exit_code": 0, "failure": None, "elapsed_seconds": 12, "max_rss_bytes": 2048,
              "total_cpu_seconds": 40.5, "node_list": "n1", "requested": {"ntasks": 4}}
    fields = job_facet_fields(ref, result, "hpc-one")
    assert fields == {"jobId": "17", "backend": "slurm", "cluster": "hpc-one", "state": "COMPLETED", "exitCode": 0,
                      "failure": None, "requested": {"ntasks": 4},
                      "used": {"elapsedSeconds": 12, "maxRssBytes": 2048, "totalCpuSeconds": 40.5, "nodeList": "n1"},
                      "location": {"workdir": "/scratch/w"}}
    json.dumps(fields)


def test_completed_job_reports_inputs_outputs_and_the_job(cluster, monkeypatch):  # noqa: F811
    pytest.importorskip("airflow.providers.openlineage")
    from openlineage.client.serde import Serde

    op, ctx = _op(monkeypatch), context(DictStore())
    op.execute_complete(ctx, fire(defer(op, ctx)))
    job = cluster.only_job()
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://bucket", "input/mesh.h5")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://bucket", "results/run1")]
    facet = json.loads(Serde.to_json(lineage.run_facets["hpcai_job"]))
    assert facet["jobId"] == job.job_id and facet["backend"] == "slurm" and facet["cluster"] == "hpc-one"
    assert facet["state"] == "COMPLETED" and facet["exitCode"] == 0
    assert facet["requested"]["ntasks"] == 4 and facet["requested"]["memory"] == GIB
    assert set(facet["used"]) >= {"elapsedSeconds"}
    assert lineage.run_facets["externalQuery"].externalQueryId == job.job_id
    assert lineage.run_facets["externalQuery"].source == "slurm:hpc-one"


def test_a_failed_job_still_reports_what_it_used(cluster, monkeypatch):  # noqa: F811
    pytest.importorskip("airflow.providers.openlineage")
    cluster.script_outcomes("oom")
    op, ctx = _op(monkeypatch, outlets=[]), context(DictStore())
    with pytest.raises(exc.SlurmOutOfMemory):
        op.execute_complete(ctx, fire(defer(op, ctx)))
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)  # also what on_failure falls back to
    facet = lineage.run_facets["hpcai_job"]
    assert facet.jobId == cluster.only_job().job_id and facet.failure == "oom"
    assert facet.requested["ntasks"] == 4 and lineage.outputs == []


def test_without_the_openlineage_provider_there_is_no_lineage(cluster, monkeypatch):  # noqa: F811
    op, ctx = _op(monkeypatch), context(DictStore())
    op.execute_complete(ctx, fire(defer(op, ctx)))
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)  # as if not installed
    assert op.get_openlineage_facets_on_complete(task_instance=None) is None


def test_the_openlineage_provider_picks_up_the_operators_lineage(cluster, monkeypatch):  # noqa: F811
    pytest.importorskip("airflow.providers.openlineage")
    from types import SimpleNamespace

    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    op, ctx = _op(monkeypatch), context(DictStore())
    op.execute_complete(ctx, fire(defer(op, ctx)))
    metadata = ExtractorManager().extract_metadata(
        dagrun=SimpleNamespace(run_id="manual__2027-01-01"), task=op,
        task_instance_state=TaskInstanceState.SUCCESS, task_instance=SimpleNamespace(task=op))
    assert metadata.run_facets["hpcai_job"].jobId == cluster.only_job().job_id
    assert [d.name for d in metadata.outputs] == ["results/run1"]
