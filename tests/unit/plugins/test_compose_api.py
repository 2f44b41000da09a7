"""The Compose routes (palette, open, validate, save) and the run monitor, with real Airflow JWTs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.plugins.test_plugin_api import snapshot

ROOT = Path(__file__).resolve().parents[3]
SIM = {"kernel": "assembly_line", "backend": "local", "kernel_params": {"horizon": 200, "warmup": 10}}


def _document(name="composed", version="1.0.0", **extra):
    return {"template": {"name": name, "version": version, "title": "Composed",
                         "parameters": {"type": "object", "properties": {}}},
            "nodes": [{"id": "line", "kind": "simulation", "args": SIM, "position": {"x": 1, "y": 2}},
                      {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}}],
            "edges": [{"source": "line", "target": "table"}], **extra}


def test_the_pages_are_served_with_the_bundled_assets(client):
    for page, script in (("compose", "compose.js"), ("monitor", "monitor.js")):
        answer = client.get(f"/hpcai/{page}", headers=client.as_role("viewer"))
        assert answer.status_code == 200 and f"/hpcai/static/{script}" in answer.text
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        asset = client.get(f"/hpcai/static/{script}", headers=client.as_role("viewer"))
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert client.get("/hpcai/static/xyflow.css", headers=client.as_role("viewer")).status_code == 200


def test_a_viewer_sees_the_palette_and_opens_a_template(client):
    palette = client.get("/hpcai/api/compose/palette", headers=client.as_role("viewer")).json()
    assert "simulation:seismic" in {e["id"] for e in palette["palette"]}
    opened = client.get("/hpcai/api/compose/open/hello-local", headers=client.as_role("viewer")).json()
    assert [n["id"] for n in opened["document"]["nodes"]] == ["greet", "machine", "done"]
    assert opened["next_version"] == "1.0.1" and opened["document"]["base"] == {"name": "hello-local",
                                                                                 "version": "1.0.0"}


def test_validate_answers_problems_per_node_and_writes_nothing(client, repo):
    before = snapshot(repo)
    document = _document(edges=[])
    answer = client.post("/hpcai/api/compose/validate", json={"document": document}, headers=client.as_role("viewer"))
    assert answer.status_code == 200
    assert [(p["node"], p["field"]) for p in answer.json()["problems"]] == [("table", "input")]
    assert snapshot(repo) == before


def test_a_viewer_cannot_save(client, repo):
    before = snapshot(repo)
    answer = client.post("/hpcai/api/compose/save", json={"document": _document()}, headers=client.as_role("viewer"))
    assert answer.status_code == 403 and snapshot(repo) == before


@pytest.mark.parametrize("role", ["op", "admin"])
def test_op_and_admin_save_a_new_version_with_provenance(client, repo, role):
    answer = client.post("/hpcai/api/compose/save", json={"document": _document()}, headers=client.as_role(role))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["name"] == "composed" and body["version"] == "1.0.0" and body["publisher"] == f"{role}-user"
    assert body["provenance"]["composed_by"] == f"{role}-user"
    assert repo.get("composed", "1.0.0").source == body["manifest"]
    # instantiated like any template
    created = client.post("/hpcai/api/templates/composed/instantiate", json={"version": "1.0.0", "params": {}},
                          headers=client.as_role("user"))
    assert created.status_code == 201 and created.json()["dag_id"].startswith("tpl_composed_")


def test_saving_a_version_again_with_other_content_is_a_conflict_naming_the_next_version(client, repo):
    headers = client.as_role("admin")
    assert client.post("/hpcai/api/compose/save", json={"document": _document()}, headers=headers).status_code == 201
    changed = _document()
    changed["nodes"][0]["args"] = {**SIM, "kernel_params": {"horizon": 300, "warmup": 10}}
    answer = client.post("/hpcai/api/compose/save", json={"document": changed}, headers=headers)
    assert answer.status_code == 409
    [problem] = answer.json()["problems"]
    assert problem["field"] == "version" and "1.0.1" in problem["message"]


def test_an_opened_template_saved_unchanged_publishes_nothing(client, repo):
    before = snapshot(repo)
    opened = client.get("/hpcai/api/compose/open/hello-local", headers=client.as_role("admin")).json()
    answer = client.post("/hpcai/api/compose/save", json={"document": opened["document"]}, headers=client.as_role("admin"))
    assert answer.status_code == 200 and answer.json()["unchanged"] is True
    assert answer.json()["manifest"] == (ROOT / "airflow_provider_hpcai/templates/builtin/hello-local/template.yaml").read_text()
    assert snapshot(repo) == before


def test_an_invalid_document_is_not_saved(client, repo):
    before = snapshot(repo)
    answer = client.post("/hpcai/api/compose/save", json={"document": _document(edges=[])}, headers=client.as_role("admin"))
    assert answer.status_code == 422 and answer.json()["problems"][0]["node"] == "table"
    assert snapshot(repo) == before


@pytest.mark.parametrize("body", [{}, {"document": _document(), "extra": 1}, [], {"manifest": "x"}])
def test_a_body_without_a_document_is_a_422(client, body):
    answer = client.post("/hpcai/api/compose/validate", json=body, headers=client.as_role("viewer"))
    assert answer.status_code == 422 and "document" in answer.json()["detail"]


def test_a_cross_site_form_cannot_save(client, repo):
    before = snapshot(repo)
    answer = client.post("/hpcai/api/compose/save", content=json.dumps({"document": _document()}),
                         headers={**client.as_role("admin"), "content-type": "text/plain"})
    assert answer.status_code == 415 and snapshot(repo) == before


def test_slurm_stages_are_checked_against_the_partitions_through_the_cached_monitor(client, fakes):
    document = _document()
    document["nodes"][0]["args"] = {**SIM, "backend": "slurm", "job_resources": {"cpus_per_task": 64}}
    for _ in range(5):  # many editors validating: the cluster is asked once per interval
        answer = client.post("/hpcai/api/compose/validate", json={"document": document}, headers=client.as_role("viewer"))
        [problem] = answer.json()["problems"]
        assert problem["field"] == "job_resources/cpus_per_task" and "have 8" in problem["message"]
    assert fakes["cluster"].calls == 1
