"""The composer's document: round trips, canonical YAML, provenance, and the live checks per node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from airflow_provider_hpcai.templates.compose import (
    document_from_manifest,
    dump_manifest,
    manifest_from_document,
    next_version,
)
from airflow_provider_hpcai.templates.compose_check import check_document, palette, partition_problems
from airflow_provider_hpcai.templates.errors import TemplatePermissionError

ROOT = Path(__file__).resolve().parents[3]
BUILTIN = ROOT / "airflow_provider_hpcai" / "templates" / "builtin"
CASE_STUDIES = ("climate-adaptive", "manufacturing-optimization", "seismic-risk")


@pytest.fixture()
def repo(tmp_path):
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    return TemplateRepository(tmp_path, TemplateSettings(root=tmp_path, builtin=True))


def _through_the_browser(document):
    return json.loads(json.dumps(document))  # what the page sends back: JSON, nothing else


def _flow(**changes):
    doc = {
        "template": {"name": "my-flow", "version": "1.0.0", "title": "Mine",
                     "parameters": {"type": "object", "properties": {}}},
        "nodes": [
            {"id": "line", "kind": "simulation",
             "args": {"kernel": "assembly_line", "backend": "local", "kernel_params": {"horizon": 200, "warmup": 10}}},
            {"id": "table", "kind": "dask_analysis", "args": {"analysis": "summary_table"}},
        ],
        "edges": [{"source": "line", "target": "table"}],
    }
    doc.update(changes)
    return doc


def _problems(result, node=None):
    return [p for p in result["problems"] if node is None or p["node"] == node]


@pytest.mark.parametrize("name", [*CASE_STUDIES, "hello-local", "param-sweep"])
def test_a_published_template_saved_unchanged_gives_its_manifest_back_byte_for_byte(repo, name):
    found = repo.get(name)
    document = _through_the_browser(document_from_manifest(found.manifest.raw, base={"name": name,
                                                                                   "version": found.manifest.version}))
    assert check_document(document, repo)["valid"]
    out = manifest_from_document(document, base=found, composed_by="someone")
    assert out["unchanged"] is True
    assert out["text"].encode() == (BUILTIN / name / "template.yaml").read_bytes()


def test_a_stage_template_opens_as_nodes_and_edges(repo):
    document = document_from_manifest(repo.get("hello-local").manifest.raw)
    assert [n["id"] for n in document["nodes"]] == ["greet", "machine", "done"]
    assert document["edges"] == [{"source": "greet", "target": "machine"}, {"source": "machine", "target": "done"}]
    # laid out left to right by depth
    xs = [n["position"]["x"] for n in document["nodes"]]
    assert xs == sorted(xs) and len(set(xs)) == 3


def test_a_factory_template_opens_with_no_nodes_and_keeps_its_entrypoint(repo):
    document = document_from_manifest(repo.get("seismic-risk").manifest.raw)
    assert document["nodes"] == [] and document["edges"] == []
    assert document["template"]["entrypoint"] == "airflow_provider_hpcai.casestudies.workflows:seismic_risk_template"


def test_a_changed_workflow_is_canonical_yaml_with_provenance_and_round_trips(repo):
    base = repo.get("hello-local")
    document = _through_the_browser(document_from_manifest(base.manifest.raw, base={"name": "hello-local",
                                                                                   "version": "1.0.0"}))
    document["nodes"][0]["args"]["argv"][-1] = "3"
    # The built-in belongs to nobody here: a changed copy is published under a name of one's own.
    with pytest.raises(TemplatePermissionError, match="built-in"):
        repo.publish(manifest_from_document(document, base=base, composed_by="op-user")["text"], publisher="op-user")
    document["template"]["name"] = "hello-mine"
    sources = [{"name": "hello-local", "version": "1.0.0", "sha256": base.checksum}]
    out = manifest_from_document(document, base=base, composed_by="op-user", sources=sources,
                                 now="2026-12-06T12:00:00+00:00")
    assert out["unchanged"] is False
    data = yaml.safe_load(out["text"])
    assert data["provenance"] == {"composed_by": "op-user", "composed_at": "2026-12-06T12:00:00+00:00",
                                  "from": sources}
    assert dump_manifest(data) == out["text"]  # canonical: reads back and dumps to the same bytes
    published = repo.publish(out["text"], publisher="op-user")
    reopened = document_from_manifest(published.manifest.raw, base={"name": "hello-mine", "version": "1.0.0"})
    again = manifest_from_document(_through_the_browser(reopened), base=published, composed_by="op-user")
    assert again["unchanged"] is True and again["text"] == out["text"]


def test_next_version_skips_taken_ones():
    assert next_version("1.2.3", []) == "1.2.4"
    assert next_version("1.2.3-rc.1", ["1.2.4"]) == "1.2.5"


def test_a_valid_flow_gives_its_manifest(repo):
    result = check_document(_flow(), repo)
    assert result["valid"], result["problems"]
    assert "kind: dask_analysis" in result["manifest"]


def test_a_cycle_is_shown_on_every_node_of_it(repo):
    result = check_document(_flow(edges=[{"source": "line", "target": "table"}, {"source": "table", "target": "line"}]),
                            repo)
    assert {p["node"] for p in result["problems"] if "cycle" in p["message"]} == {"line", "table"}
    assert not result["valid"] and result["manifest"] is None


def test_an_unconnected_input_is_shown_on_its_node(repo):
    result = check_document(_flow(edges=[]), repo)
    [problem] = _problems(result, "table")
    assert problem["field"] == "input" and "not connected" in problem["message"]


def test_a_type_mismatch_names_both_ends(repo):
    doc = _flow()
    doc["nodes"].append({"id": "hello", "kind": "bash", "args": {"argv": ["echo", "hi"]}})
    doc["edges"].append({"source": "hello", "target": "table"})
    [problem] = _problems(check_document(doc, repo), "table")
    assert "hello gives text" in problem["message"] and "simulation_result" in problem["message"]


def test_a_kernel_parameter_out_of_range_is_on_its_field(repo):
    doc = _flow()
    doc["nodes"][0]["args"]["kernel_params"]["replications"] = 0
    [problem] = _problems(check_document(doc, repo), "line")
    assert problem["field"] == "kernel_params/replications" and "minimum of 1" in problem["message"]


def test_a_cross_parameter_rule_of_the_kernel_is_on_the_node(repo):
    doc = _flow()
    doc["nodes"][0]["args"]["kernel_params"] = {"horizon": 100}  # the default warm-up (1000) is longer
    [problem] = _problems(check_document(doc, repo), "line")
    assert problem["field"] == "kernel_params" and "warmup" in problem["message"]


def test_resources_the_local_machine_cannot_give(repo):
    doc = _flow()
    doc["nodes"][0]["args"]["job_resources"] = {"cpus_per_task": 4096}
    [problem] = _problems(check_document(doc, repo), "line")
    assert problem["field"] == "job_resources/cpus_per_task" and "local machine has" in problem["message"]


CLUSTER = {
    "partitions": [{"name": "debug", "default": True, "max_time_seconds": 3600.0},
                   {"name": "long", "default": False, "max_time_seconds": 86400.0}],
    "nodes": [{"name": "n1", "partition": "debug", "cpus_total": 8, "memory_mb": 16000},
              {"name": "n1", "partition": "long", "cpus_total": 8, "memory_mb": 16000}],
}


@pytest.mark.parametrize(("resources", "field", "says"), [
    ({"partition": "gpu"}, "job_resources/partition", "does not exist"),
    ({"cpus_per_task": 16}, "job_resources/cpus_per_task", "have 8"),
    ({"memory": "64G"}, "job_resources/memory", "at most 16000 MB"),
    ({"time_limit": "02:00:00"}, "job_resources/time_limit", "at most 60 minutes"),
    ({"nodes": 2}, "job_resources/nodes", "has 1"),
])
def test_resources_a_partition_cannot_give(resources, field, says):
    [problem] = partition_problems("sim", "slurm", resources, CLUSTER)
    assert problem["field"] == field and says in problem["message"]


def test_the_same_request_fits_the_long_partition():
    assert partition_problems("sim", "slurm", {"time_limit": "02:00:00", "partition": "long"}, CLUSTER) == []


def test_the_partition_checks_use_the_cluster_status_once_per_check(repo):
    calls = []
    doc = _flow()
    for node in doc["nodes"][:1]:
        node["args"]["backend"] = "slurm"
        node["args"]["job_resources"] = {"cpus_per_task": 16}
    doc["nodes"].append({"id": "line2", "kind": "simulation", "args": {**doc["nodes"][0]["args"]}})
    result = check_document(doc, repo, cluster=lambda: calls.append(1) or CLUSTER)
    assert {p["node"] for p in result["problems"]} == {"line", "line2"} and len(calls) == 1


def test_mapping_needs_rows_from_a_connected_stage(repo):
    doc = _flow()
    doc["nodes"].append({"id": "per_row", "kind": "simulation", "map_over": "line",
                         "args": {"kernel": "assembly_line", "kernel_params": {"horizon": 200, "warmup": 10}}})
    doc["edges"].append({"source": "line", "target": "per_row"})
    [problem] = _problems(check_document(doc, repo), "per_row")
    assert problem["field"] == "map_over" and "not rows" in problem["message"]
    doc["nodes"][-1]["map_over"] = "table"
    doc["edges"][-1] = {"source": "table", "target": "per_row"}
    assert check_document(doc, repo)["valid"]


def test_a_sub_workflow_is_checked_against_its_own_parameters(repo):
    doc = _flow()
    doc["nodes"].append({"id": "hello", "kind": "template",
                         "args": {"name": "hello-local", "version": "1.0.0", "params": {"repeats": 99}}})
    [problem] = _problems(check_document(doc, repo), "hello")
    assert problem["field"] == "params/repeats"
    doc["nodes"][-1]["args"]["name"] = "seismic-risk"
    doc["nodes"][-1]["args"]["params"] = {}
    [problem] = _problems(check_document(doc, repo), "hello")
    assert "only a template made of stages" in problem["message"]


def test_publisher_code_kinds_follow_the_site_policy(repo):
    doc = _flow(nodes=[{"id": "job", "kind": "slurm_job", "args": {"script": "srun hostname\n"}}], edges=[])
    [problem] = _problems(check_document(doc, repo), "job")
    assert "template_job_scripts" in problem["message"]
    entries = {e["id"]: e for e in palette(repo)}
    assert entries["slurm_job"]["disabled"] and entries["kubernetes_job"]["disabled"]
    assert not entries["simulation:seismic"]["disabled"]


def test_the_palette_offers_every_kind_with_a_form_schema(repo):
    entries = {e["id"]: e for e in palette(repo)}
    assert {"simulation:climate", "simulation:seismic", "simulation:assembly_line", "slurm_job", "kubernetes_job",
            "dask_analysis", "template:hello-local"} <= set(entries)
    seismic = entries["simulation:seismic"]["schema"]["properties"]
    assert seismic["kernel_params"]["properties"]["steps"]["minimum"] == 1
    assert set(seismic["job_resources"]["properties"]) >= {"ntasks", "memory", "gpus", "partition"}
    assert entries["kubernetes_job"]["schema"]["properties"]["image"]["title"] == "Container image"
    assert "template:seismic-risk" not in entries  # built by a factory: not usable as a sub-workflow


@pytest.mark.parametrize("document", [
    None, [], {"template": {}, "nodes": "x", "edges": []},
    {"template": {}, "nodes": [{"id": "../x", "kind": "bash"}], "edges": []},
    {"template": {}, "nodes": [], "edges": [{"source": "a", "target": "b"}], "extra": 1},
])
def test_a_malformed_document_is_refused_with_messages(repo, document):
    result = check_document(document, repo)
    assert not result["valid"] and result["problems"] and result["manifest"] is None


def test_unknown_edges_duplicate_ids_and_unknown_kinds(repo):
    doc = _flow()
    doc["nodes"].append({"id": "line", "kind": "bash", "args": {"argv": ["echo"]}})
    doc["nodes"].append({"id": "odd", "kind": "python"})
    doc["edges"].append({"source": "ghost", "target": "table"})
    messages = " | ".join(p["message"] for p in check_document(doc, repo)["problems"])
    assert "named 'line'" in messages and "kind 'python'" in messages and "'ghost'" in messages
