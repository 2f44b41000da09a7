"""DAGs of composed manifests: analysis stages, stages mapped over rows, sub-workflows; the analysis itself."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.compose import manifest_from_document
from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.manifest import parse_manifest
from airflow_provider_hpcai.templates.stages import _row_params, build_dag

SIM = {"kernel": "assembly_line", "backend": "local", "kernel_params": {"horizon": 200, "warmup": 10}}


@pytest.fixture()
def repo(tmp_path):
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    return TemplateRepository(tmp_path / "repo", TemplateSettings(root=tmp_path / "repo", builtin=True))


def _publish(repo, nodes, edges, name="composed"):
    document = {"template": {"name": name, "version": "1.0.0", "title": "t",
                             "parameters": {"type": "object", "properties": {}}},
                "nodes": nodes, "edges": edges}
    return repo.publish(manifest_from_document(document, composed_by="op")["text"], publisher="op")


def _dag(repo, version):
    record = repo.instantiate(version.manifest.name, version.manifest.version, {}, "op")
    return build_dag(version.manifest, record, templates=lambda n, v: repo.get(n, v).manifest)


def test_an_analysis_gets_every_upstream_result_and_a_folder_per_run(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__HPCAI__LOCAL_WORK_DIR", str(tmp_path / "jobs"))
    version = _publish(repo, [{"id": "a", "kind": "simulation", "args": SIM},
                              {"id": "b", "kind": "simulation", "args": SIM},
                              {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}}],
                       [{"source": "a", "target": "table"}, {"source": "b", "target": "table"}])
    dag = _dag(repo, version)
    table = dag.task_dict["table"]
    assert type(table).__name__ == "DaskOperator" and table.python_callable.__name__ == "summary_table"
    assert sorted(table.upstream_task_ids) == ["a", "b"]
    assert [arg.operator.task_id for arg in table.op_kwargs["results"]] == ["a", "b"]
    assert table.op_kwargs["output_dir"].startswith(str(tmp_path / "jobs" / "analysis" / dag.dag_id))
    assert "{{ run_id" in table.op_kwargs["output_dir"]


def test_a_mapped_stage_runs_once_per_row_of_its_source(repo):
    version = _publish(repo, [{"id": "a", "kind": "simulation", "args": SIM},
                              {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}},
                              {"id": "per_row", "kind": "simulation", "map_over": "table", "args": SIM}],
                       [{"source": "a", "target": "table"}, {"source": "table", "target": "per_row"}])
    dag = _dag(repo, version)
    mapped = dag.task_dict["per_row"]
    assert type(mapped).__name__ == "MappedOperator"
    assert sorted(mapped.upstream_task_ids) == ["per_row_rows", "table"]
    merge = _row_params({"horizon": 200}, "assembly_line")
    # a row's values for the kernel's own parameters override the stage's; anything else is left out
    assert merge({"seed": 3, "kernel": "x", "aggregate.throughput.mean": 1.0}) == {
        "kernel_params": {"horizon": 200, "seed": 3}}


def test_a_sub_workflow_is_inlined_as_a_task_group(repo):
    version = _publish(repo, [{"id": "a", "kind": "simulation", "args": SIM},
                              {"id": "hello", "kind": "template",
                               "args": {"name": "hello-local", "version": "1.0.0", "params": {"greeting": "hi"}}}],
                       [{"source": "a", "target": "hello"}])
    dag = _dag(repo, version)
    assert {"hello.greet", "hello.machine", "hello.done"} <= set(dag.task_dict)
    assert dag.task_dict["hello.greet"].upstream_task_ids == {"a"}
    assert dag.task_dict["hello.greet"].argv[-2] == "hi"


def test_mapping_a_kind_that_cannot_be_mapped_is_refused_in_the_manifest():
    text = """
name: bad
version: 1.0.0
title: t
parameters: {type: object}
stages:
  - {id: a, kind: simulation, args: {kernel: assembly_line}}
  - {id: b, kind: dask_analysis, depends_on: [a], map_over: a, args: {analysis: summary_table}}
"""
    with pytest.raises(TemplateValidationError, match="cannot be mapped"):
        parse_manifest(text, factory_allowlist=[])
    with pytest.raises(TemplateValidationError, match="does not depend on"):
        parse_manifest(text.replace("depends_on: [a], map_over: a", "map_over: a"), factory_allowlist=[])


def test_an_analysis_may_only_name_a_listed_analysis():
    text = """
name: bad
version: 1.0.0
title: t
parameters: {type: object}
stages:
  - {id: b, kind: dask_analysis, args: {analysis: "os:system"}}
"""
    with pytest.raises(TemplateValidationError, match="summary_table"):
        parse_manifest(text, factory_allowlist=[])


def test_summary_table_runs_on_dask_and_writes_a_csv(tmp_path):
    from distributed import Client

    from airflow_provider_hpcai.templates.analysis import summary_table

    results = [
        {"kernel": "seismic", "summary": {"pgv_max": 0.5, "grid": {"nx": 64}, "name": "x"},
         "job": {"job_id": "1", "elapsed_seconds": 2.0, "max_rss_bytes": 1000}},
        [{"kernel": "assembly_line", "summary": {"throughput": 0.7}, "job": {"job_id": "2", "elapsed_seconds": 1.0}}],
    ]
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        out = summary_table(client, results, str(tmp_path / "out"))
    assert [row["kernel"] for row in out["rows"]] == ["seismic", "assembly_line"]
    assert out["rows"][0]["grid.nx"] == 64 and out["rows"][1]["throughput"] == 0.7
    declared, chart = out["outputs"]
    assert chart["kind"] == "png" and Path(chart["path"]).read_bytes().startswith(b"\x89PNG")
    with Path(declared["path"]).open() as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["job.elapsed_seconds"] == "2.0" and table[1]["job.elapsed_seconds"] == "1.0"
