"""Hostile composed workflows: names, parameters and edges from the Compose page are untrusted.

Whatever a document holds, validate and save answer 2xx or a 4xx with a readable ``detail`` (never
a 500), nothing runs as code, a refusal leaves the repository unchanged, and whatever is accepted
is a manifest that reads back to the same data.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.payloads import HOSTILE, assert_no_sentinel, hostile_names, hostile_text, injection
from tests.hostile.test_hostile_plugin_api import _answer_is_clear, _json_body, _tree, api  # noqa: F401

SIM = {"kernel": "seismic", "backend": "local", "kernel_params": {"nx": 64, "nz": 48, "steps": 20}}
BASE_DOC: dict[str, Any] = {
    "template": {"name": "composed", "version": "1.0.0", "title": "Composed",
                 "parameters": {"type": "object", "properties": {}}},
    "nodes": [{"id": "sim", "kind": "simulation", "args": SIM},
              {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}},
              {"id": "say", "kind": "bash", "args": {"argv": ["echo", "hello"]}}],
    "edges": [{"source": "sim", "target": "table"}],
}
PLACES = ["template.name", "template.version", "template.title", "node.id", "node.kind", "edge.source",
          "edge.target", "map_over", "kernel_params.nx", "kernel_params.velocity_model", "kernel_params.extra",
          "argv.word", "argv.program", "env.value", "analysis", "resources.memory", "resources.partition"]


def _place(doc: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    sim, table, say = doc["nodes"]
    section, _, key = where.partition(".")
    if section == "template":
        doc["template"][key] = value
    elif where == "node.id":
        sim["id"] = value
        doc["edges"][0]["source"] = value
    elif where == "node.kind":
        say["kind"] = value
    elif section == "edge":
        doc["edges"][0][key] = value
    elif where == "map_over":
        sim["map_over"] = value
    elif section == "kernel_params":
        sim["args"]["kernel_params"][key] = value
    elif where == "argv.word":
        say["args"]["argv"].append(value)
    elif where == "argv.program":
        say["args"]["argv"][0] = value
    elif where == "env.value":
        say["args"]["env"] = {"GREETING": value}
    elif where == "analysis":
        table["args"]["analysis"] = value
    else:
        sim["args"].setdefault("job_resources", {})[key] = value
    return doc


def _post(api: Any, path: str, document: Any) -> Any:  # noqa: F811 - api is the imported fixture
    return api["client"].post(path, content=_json_body({"document": document}),
                              headers={**api["admin"], "content-type": "application/json"})


@HOSTILE
@given(value=st.one_of(hostile_text(), hostile_names(), injection(), st.integers(), st.floats(allow_nan=False),
                       st.lists(hostile_names(), max_size=2), st.dictionaries(hostile_names(), hostile_names(),
                                                                              max_size=2)),
       where=st.sampled_from(PLACES))
def test_hostile_composed_documents_are_refused_or_saved_as_data(api: Any, value: Any, where: str) -> None:  # noqa: F811
    repo = api["repo"]
    before = _tree(repo.root)
    document = _place(BASE_DOC, where, value)
    checked = _post(api, "/hpcai/api/compose/validate", document)
    _answer_is_clear(checked)
    saved = _post(api, "/hpcai/api/compose/save", document)
    _answer_is_clear(saved)
    assert_no_sentinel(f"({where}={value!r})")
    if saved.status_code >= 400:
        assert _tree(repo.root) == before
        return
    # Accepted: then it is data that reads back to what was composed, and nothing else changed.
    body = saved.json()
    assert checked.status_code == 200 and checked.json()["valid"] is True
    data = yaml.safe_load(body["manifest"])
    assert {k: v for k, v in data.items() if k != "provenance"} == json.loads(json.dumps(
        {k: v for k, v in yaml.safe_load(checked.json()["manifest"]).items()}))
    assert repo.get(body["name"], body["version"]).source == body["manifest"]
    shutil.rmtree(repo.root / "templates" / body["name"])  # the next example starts from the same repository


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"x"', b"null", b'{"document": null}', b'{"document": []}',
                                 b'{"document": {"nodes": [], "edges": []}}', b"{" * 5000 + b"}" * 5000,
                                 b'{"document": {"template": {}, "nodes": [], "edges": []}, "x": 1}'])
def test_malformed_compose_bodies_get_4xx(api: Any, raw: bytes) -> None:  # noqa: F811
    before = _tree(api["repo"].root)
    for path in ("/hpcai/api/compose/validate", "/hpcai/api/compose/save"):
        response = api["client"].post(path, content=raw, headers={**api["admin"], "content-type": "application/json"})
        _answer_is_clear(response)
        if path.endswith("validate") and response.status_code == 200:
            assert response.json()["valid"] is False
        else:
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    assert _tree(api["repo"].root) == before


def _big(nodes: int, edges: int) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOC)
    doc["nodes"] = [{"id": f"s{i}", "kind": "empty"} for i in range(nodes)]
    doc["edges"] = [{"source": f"s{i % nodes}", "target": f"s{(i * 7 + 1) % nodes}"} for i in range(edges)]
    return doc


def test_the_largest_document_is_checked_quickly_and_one_more_stage_is_refused(api: Any) -> None:  # noqa: F811
    started = time.perf_counter()
    response = _post(api, "/hpcai/api/compose/validate", _big(200, 800))
    assert response.status_code == 200 and time.perf_counter() - started < 10
    assert any("cycle" in p["message"] for p in response.json()["problems"])  # edges go every way
    for nodes, edges in ((201, 0), (10, 801)):
        refused = _post(api, "/hpcai/api/compose/validate", _big(nodes, edges))
        assert refused.status_code == 200 and refused.json()["valid"] is False
        assert "is too long" in refused.json()["problems"][0]["message"]


def test_a_sub_workflow_cannot_reach_outside_the_repository(api: Any) -> None:  # noqa: F811
    document = copy.deepcopy(BASE_DOC)
    document["nodes"].append({"id": "sub", "kind": "template",
                              "args": {"name": "../../etc/passwd", "version": "1.0.0"}})
    response = _post(api, "/hpcai/api/compose/validate", document)
    problems = [p for p in response.json()["problems"] if p["node"] == "sub"]
    assert problems and not response.json()["valid"]


@HOSTILE
@given(dag_id=hostile_names(), run_id=st.one_of(hostile_names(), hostile_text(long=False)), task_id=hostile_names())
def test_hostile_run_paths_get_clear_answers_and_reach_the_database_only_when_well_formed(
        api: Any, dag_id: str, run_id: str, task_id: str) -> None:  # noqa: F811
    import re
    from urllib.parse import quote

    from airflow_provider_hpcai.plugins import run_monitor

    asked: list[tuple[str, str]] = []
    original = run_monitor.read_run
    run_monitor.read_run = lambda d, r: asked.append((d, r)) or None
    try:
        d, r, t = (quote(x.encode("utf-8", "surrogateescape"), safe="") for x in (dag_id, run_id, task_id))
        for path in (f"/hpcai/api/runs/{d}/{r}", f"/hpcai/api/runs/{d}/{r}/outputs/{t}/0?map_index=-1"):
            response = api["client"].get(path, headers=api["admin"])
            _answer_is_clear(response)
            assert response.status_code in (401, 403, 404, 405, 422), (path, response.status_code)
    finally:
        run_monitor.read_run = original
    well_formed = re.compile(r"[A-Za-z0-9_.:+~-]{1,250}")
    assert all(well_formed.fullmatch(a) and well_formed.fullmatch(b) for a, b in asked), asked


@HOSTILE
@given(name=hostile_names(), version=st.one_of(hostile_names(), hostile_text(long=False)))
def test_hostile_names_to_open_get_clear_4xx(api: Any, name: str, version: str) -> None:  # noqa: F811
    from urllib.parse import quote, urlencode

    n = quote(name.encode("utf-8", "surrogateescape"), safe="")
    query = urlencode({"version": version.encode("utf-8", "surrogateescape")})
    response = api["client"].get(f"/hpcai/api/compose/open/{n}?{query}", headers=api["admin"])
    _answer_is_clear(response)
    if response.status_code == 200:  # only the one published template opens
        assert response.json()["document"]["template"]["name"] == "hello-local"
