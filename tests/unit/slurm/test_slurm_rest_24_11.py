"""slurmrestd v0.0.40, v0.0.41 and v0.0.42 as the real Slurm 24.11.5 answers them.

The responses were recorded from a 24.11.5 slurmrestd built here (``tests/fixtures/slurmrestd/
capture.py``); the OpenAPI document is the one that server publishes at ``/openapi/v3``.
Each test states what a DAG author would otherwise see differ between 22.05 and 24.11.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.hooks.slurm import SlurmHook, with_default_partition
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.outcome import build_result
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.fakes.slurmrestd import FIXTURES, FakeSlurmRestServer, load_fixture

MODERN = ["v0.0.40", "v0.0.41", "v0.0.42"]
OPENAPI = FIXTURES.parent / "openapi-24.11.json.gz"
#: fixture suffixes of the five recorded jobs: (/slurm job, /slurmdb job)
SCENARIOS = {"ok": ("job_completed", "slurmdb_job_ok"), "exit3": ("job_failed_exit3", "slurmdb_job_exit3"),
             "oom": ("job_oom", "slurmdb_job_oom"), "timeout": ("job_timeout", "slurmdb_job_timeout"),
             "cancel": ("job_cancelled", "slurmdb_job_cancel")}


@cache
def openapi() -> dict[str, Any]:
    return json.loads(gzip.decompress(OPENAPI.read_bytes()))


def _only(payload: dict[str, Any]) -> Any:
    (value,) = payload.values()
    return value


# ------------------------------------------------------------------------------------ status and accounting
@pytest.mark.parametrize("version", MODERN)
def test_controller_exit_codes_of_signalled_jobs(version):
    """24.11 reports a killed job as SIGNALED with return_code unset; the exit code is 128 + signal, as on 22.05."""
    seen = {key: _only(rest_api.parse_jobs(load_fixture(job, version))) for key, (job, _) in SCENARIOS.items()}
    assert {key: (s.state, s.exit_code) for key, s in seen.items()} == {
        "ok": ("COMPLETED", 0), "exit3": ("FAILED", 3), "oom": ("FAILED", 137), "timeout": ("TIMEOUT", 143),
        "cancel": ("CANCELLED", 143)}
    assert seen["timeout"].reason == "TimeLimit" and seen["oom"].reason == "RaisedSignal"


@pytest.mark.parametrize("version", MODERN)
@pytest.mark.parametrize(("scenario", "state", "exit_code", "signal", "failure"), [
    ("ok", "COMPLETED", 0, None, None), ("exit3", "FAILED", 3, None, "failed"), ("oom", "FAILED", 137, 9, "oom"),
    ("timeout", "TIMEOUT", 143, 15, "timeout"), ("cancel", "CANCELLED", 143, 15, "cancelled")])
def test_accounting_records_and_classification(version, scenario, state, exit_code, signal, failure):
    record = _only(rest_api.parse_db_job(load_fixture(SCENARIOS[scenario][1], version)))
    assert (record["state"], record["exit_code"], record["signal"]) == (state, exit_code, signal)
    assert record["steps"][0]["step"] == "batch" and record["node_list"] == "vm"
    result = build_result(record["job_id"], accounting=record, state=state, exit_code=None,
                          requested={"memory": record["requested_memory_bytes"]})
    assert result["failure"] == failure


@pytest.mark.parametrize("version", MODERN)
def test_total_cpu_seconds_come_from_the_steps(version):
    """slurmdbd leaves the job-level time.total at 0; the batch step has the CPU time (0.2 s of Python here)."""
    raw = load_fixture("slurmdb_job_ok", version)["jobs"][0]
    assert raw["time"]["total"]["seconds"] == 0 and raw["time"]["total"]["microseconds"] == 0
    record = _only(rest_api.parse_db_job(load_fixture("slurmdb_job_ok", version)))
    assert 0.1 < record["total_cpu_seconds"] < 2
    assert record["total_cpu_seconds"] == pytest.approx(sum(s["total_cpu_seconds"] for s in record["steps"]))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_result_means_the_same_on_22_05_and_24_11(scenario):
    """What a task returns through XCom: the same keys and values whichever REST version the cluster speaks."""
    results = {}
    for version in ["v0.0.38", *MODERN]:
        job, db = SCENARIOS[scenario]
        status = _only(rest_api.parse_jobs(load_fixture(job, version)))
        record = _only(rest_api.parse_db_job(load_fixture(db, version)))
        result = build_result(record["job_id"], accounting=record, state=status.state, exit_code=status.exit_code,
                              requested={"memory": record["requested_memory_bytes"]})
        results[version] = {k: result[k] for k in ("state", "exit_code", "signal", "failure")}
        assert set(result) == set(build_result("1", accounting={}, state="COMPLETED", exit_code=0, requested={}))
    assert all(r == results["v0.0.38"] for r in results.values()), results


@pytest.mark.parametrize("version", MODERN)
def test_partitions_state_is_one_word_and_the_default_comes_from_the_connection(version):
    parts = rest_api.parse_partitions(load_fixture("partitions", version))
    assert {name: (p["state"], p["max_time_seconds"], p["default"]) for name, p in parts.items()} == {
        "debug": ("UP", 3600, None), "long": ("UP", 86400, None)}  # 24.11 sends no partition flags
    filled = with_default_partition(parts, "debug")
    assert (filled["debug"]["default"], filled["long"]["default"]) == (True, False)
    assert with_default_partition(parts, None) == parts and with_default_partition(parts, "nope") == parts
    legacy = rest_api.parse_partitions(load_fixture("partitions"))  # 22.05 says it: never overridden
    assert with_default_partition(legacy, "long")["debug"]["default"] is True


@pytest.mark.parametrize("version", MODERN)
def test_nodes(version):
    (node,) = rest_api.parse_nodes(load_fixture("nodes", version))
    assert (node["name"], node["partition"], node["cpus_total"]) == ("vm", "debug,long", 256)
    assert node["state"] in ("idle", "mixed") and node["memory_mb"] > 0


# ------------------------------------------------------------------------------------ credentials
def _answering(version: str, fixture: str) -> RestTransport:
    recorded = load_fixture(fixture, version)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(recorded["_http_status"], json=recorded["body"])

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://head:6830")
    return RestTransport("http://head:6830", "hpcai", lambda: "stale", api_version=version, client=client)


@pytest.mark.parametrize("version", MODERN)
def test_http_511_error_1007_is_a_credentials_refusal(version):
    with pytest.raises(TransportError) as polled:
        _answering(version, "error_bad_token").statuses(["1"])
    with pytest.raises(TransportError) as submitted:
        _answering(version, "error_bad_token_submit").submit(JobSpec(name="j", script="true"), "/w")
    for err in (polled.value, submitted.value):
        assert err.returncode == 511 and err.credentials and not err.retryable
        assert "scontrol token" in str(err) and "stale" not in str(err)


def test_ping_accepts_a_bad_token_on_24_11():
    """Why version detection and health checks must not trust /ping (recorded, not assumed)."""
    assert load_fixture("ping_bad_token", "v0.0.42")["errors"] == []


def test_a_rotated_token_is_picked_up_when_24_11_refuses_a_poll(monkeypatch):
    server = FakeSlurmRestServer(version="v0.0.42", token="new-jwt-after-rotation")
    job_id = server.cluster.submit(JobSpec(name="j", script="true"), "/w")
    real = httpx.Client
    monkeypatch.setattr("airflow_provider_hpcai.slurm.rest_transport.httpx.Client",
                        lambda **kw: real(base_url=kw["base_url"], transport=server.transport()))
    conn = {"conn_type": "slurm", "login": "hpcai", "password": "old-jwt",
            "extra": {"transport": "rest", "base_url": "http://slurm-head:6830", "api_version": "auto"}}
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROT24", json.dumps(conn))
    hook = SlurmHook("slurm_rot24")
    with pytest.raises(TransportError) as refused:  # HTTP 511 on /jobs, after a re-read that found the same token
        hook.get_statuses([job_id])
    assert refused.value.credentials and refused.value.returncode == 511
    conn["password"] = "new-jwt-after-rotation"
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROT24", json.dumps(conn))
    assert hook.get_statuses([job_id])[job_id].job_id == job_id  # the same hook, no restart
    assert hook.get_conn().version == "v0.0.42"


# ------------------------------------------------------------------------------------ OpenAPI document
def test_auto_picks_the_newest_version_the_real_document_lists():
    assert rest_api.served_versions(openapi()) == {"v0.0.40", "v0.0.41", "v0.0.42"}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=openapi()) if request.url.path == "/openapi/v3" else httpx.Response(404)

    rest = RestTransport("http://head:6830", "hpcai", lambda: "t",
                         client=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://head:6830"))
    assert rest.version == "v0.0.42"


def schema_problems(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """What in ``value`` the OpenAPI 3 ``schema`` refuses: unknown or deprecated keys, wrong types, values
    outside an enum (the subset of OpenAPI that slurmrestd's documents use: $ref, type, properties,
    items, enum, deprecated)."""
    while "$ref" in schema:
        schema = openapi()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("deprecated"):
        return [f"{where} is deprecated"]
    kind = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if kind in checks and (not isinstance(value, checks[kind]) or (kind in ("integer", "number")
                                                                       and isinstance(value, bool))):
        return [f"{where} should be {kind}, not {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}={value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if kind == "object":
        known = schema.get("properties") or {}
        for key, item in value.items():
            if key not in known:
                problems.append(f"{where}.{key} is not in the schema")
            else:
                problems += schema_problems(item, known[key], f"{where}.{key}")
    elif kind == "array":
        for i, item in enumerate(value):
            problems += schema_problems(item, schema.get("items") or {}, f"{where}[{i}]")
    return problems


SPECS = {
    "plain": JobSpec(name="plain", script="echo hi"),
    "everything": JobSpec(
        name="train", script="python train.py\n", tag=make_tag("dag", "task", "run"), environment={"SEED": "7"},
        resources=Resources(nodes=2, ntasks=4, ntasks_per_node=2, cpus_per_task=2, memory="1536M", gpus="a100:2",
                            time_limit=3601, time_min="00:10:00", partition="gpu", account="proj", qos="high",
                            constraint="a100", reservation="maint", exclusive=True),
        exclude_nodes="node1,node2", array="0-3", requeue=True),
}


@pytest.mark.parametrize("version", MODERN)
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_submit_bodies_match_the_real_openapi_document(version, spec):
    operation = openapi()["paths"][f"/slurm/{version}/job/submit"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    body = rest_api.submit_body(SPECS[spec], "/scratch/w", version)
    assert schema_problems(body, schema) == []


def test_the_schema_check_catches_what_24_11_refuses():
    schema = openapi()["paths"]["/slurm/v0.0.42/job/submit"]["post"]["requestBody"]["content"]["application/json"]
    body = rest_api.submit_body(SPECS["plain"], "/w", "v0.0.38")  # 22.05's shape
    problems = schema_problems(body, schema["schema"])
    assert "$.job.environment should be array, not dict" in problems and "$.script is deprecated" in problems
    assert schema_problems({"job": {"exclusive": ["true"]}}, schema["schema"]) == ["$.job.exclusive is not in the schema"]


def test_recorded_submissions_are_the_providers_own_bodies():
    """The capture submitted rest_api.submit_body(...) to the real server: all five jobs were accepted."""
    for version in MODERN:
        body = load_fixture("job_submit_request", version)
        assert schema_problems(body, openapi()["paths"][f"/slurm/{version}/job/submit"]["post"]["requestBody"]
                               ["content"]["application/json"]["schema"]) == []
        assert load_fixture("job_submit_response", version)["errors"] == []


def test_fixture_files_stay_small_and_hold_no_token():
    folder = Path(FIXTURES).parent
    for path in [*folder.glob("v0.0.4*/*.json"), OPENAPI]:
        assert path.stat().st_size < 1 << 20, path
        if path.suffix == ".json":
            assert "eyJ" not in path.read_text(), f"{path} holds a JWT"
