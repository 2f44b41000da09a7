"""A composed workflow's DAG runs end to end (`airflow dags test`): two simulations, a Dask analysis of
their results, and a stage mapped over the analysis' rows (one run per row), on the local backend."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import run_dags_test

pytestmark = [pytest.mark.integration]

SIM = {"kernel": "assembly_line", "backend": "local", "kernel_params": {"horizon": 200, "warmup": 10}}


def test_a_composed_dag_with_an_analysis_and_a_mapped_stage_runs(airflow_home: str, tmp_path) -> None:
    from airflow_provider_hpcai.templates.compose import manifest_from_document
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    root = tmp_path / "repo"
    repo = TemplateRepository(root, TemplateSettings(root=root, builtin=True))
    document = {
        "template": {"name": "mapped", "version": "1.0.0", "title": "t",
                     "parameters": {"type": "object", "properties": {}}},
        "nodes": [{"id": "a", "kind": "simulation", "args": SIM}, {"id": "b", "kind": "simulation", "args": SIM},
                  {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}},
                  {"id": "per_row", "kind": "simulation", "map_over": "table", "args": SIM}],
        "edges": [{"source": "a", "target": "table"}, {"source": "b", "target": "table"},
                  {"source": "table", "target": "per_row"}],
    }
    repo.publish(manifest_from_document(document, composed_by="op")["text"], publisher="op")
    dag_id = repo.instantiate("mapped", "1.0.0", {}, "op")["dag_id"]
    rc, log = run_dags_test(
        airflow_home, dag_id, timeout=300, HPCAI_TEMPLATES_DIR=str(root),
        AIRFLOW__HPCAI__LOCAL_WORK_DIR=str(tmp_path / "jobs"), AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="False",
        AIRFLOW_CONN_DASK_DEFAULT=json.dumps({"conn_type": "dask",
                                              "extra": {"cluster": "local", "n_workers": 1, "processes": False}}))
    assert rc == 0, log[-5000:]
    assert re.search(rf"DagRun Finished: dag_id={dag_id}.*state=success", log), log[-5000:]
    # one mapped run per row of the analysis (two upstream results: two rows)
    assert "starting task_id=per_row map_index=0" in log and "starting task_id=per_row map_index=1" in log
    assert "starting task_id=per_row map_index=2" not in log
    [table] = list((tmp_path / "jobs" / "analysis" / dag_id).rglob("table.csv"))
    assert table.read_text().count("\n") == 3  # header and two rows
