"""slurmrestd v0.0.43, v0.0.44 and v0.0.45 as the real Slurm 26.05.3 answers them.

The responses were recorded from a 26.05.3 slurmrestd built here (``HPCAI_SLURM_VERSION=26.05
tests/fixtures/slurmrestd/capture.py``); the OpenAPI document is the one that server publishes at
``/openapi/v3``. Each test states what a DAG author would otherwise see differ between 22.05,
24.11 and 26.05: the same states, exit codes, failure classes and result keys.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from typing import Any

import httpx
import pytest

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.hooks.slurm import with_default_partition
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.outcome import build_result
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec
from tests.fakes.slurmrestd import FIXTURES, FakeSlurmRestServer, load_fixture
from tests.unit.slurm import test_slurm_rest_24_11 as older

NEWEST = ["v0.0.43", "v0.0.44", "v0.0.45"]
OPENAPI = FIXTURES.parent / "openapi-26.05.json.gz"
SCENARIOS = older.SCENARIOS
_only = older._only


@cache
def openapi() -> dict[str, Any]:
    """The document 26.05.3's slurmrestd publishes at /openapi/v3."""
    return json.loads(gzip.decompress(OPENAPI.read_bytes()))


@pytest.mark.parametrize("version", NEWEST)
def test_controller_states_and_exit_codes(version):
    seen = {
        key: _only(rest_api.parse_jobs(load_fixture(job, version))) for key, (job, _) in SCENARIOS.items()
    }
    assert {key: (s.state, s.exit_code) for key, s in seen.items()} == {
        "ok": ("COMPLETED", 0),
        "exit3": ("FAILED", 3),
        "oom": ("FAILED", 137),
        "timeout": ("TIMEOUT", 143),
        "cancel": ("CANCELLED", 143),
    }
    assert seen["timeout"].reason == "TimeLimit"


@pytest.mark.parametrize("version", NEWEST)
@pytest.mark.parametrize(
    ("scenario", "state", "exit_code", "signal", "failure"),
    [
        ("ok", "COMPLETED", 0, None, None),
        ("exit3", "FAILED", 3, None, "failed"),
        ("oom", "FAILED", 137, 9, "oom"),
        ("timeout", "TIMEOUT", 143, 15, "timeout"),
        ("cancel", "CANCELLED", 143, 15, "cancelled"),
    ],
)
def test_accounting_records_and_classification(version, scenario, state, exit_code, signal, failure):
    record = _only(rest_api.parse_db_job(load_fixture(SCENARIOS[scenario][1], version)))
    assert (record["state"], record["exit_code"], record["signal"]) == (state, exit_code, signal)
    assert record["steps"][0]["step"] == "batch" and record["node_list"] == "vm"
    result = build_result(
        record["job_id"],
        accounting=record,
        state=state,
        exit_code=None,
        requested={"memory": record["requested_memory_bytes"]},
    )
    assert result["failure"] == failure


@pytest.mark.parametrize("version", NEWEST)
def test_cpu_seconds_and_memory_request(version):
    record = _only(rest_api.parse_db_job(load_fixture("slurmdb_job_ok", version)))
    assert 0.1 < record["total_cpu_seconds"] < 2
    assert record["requested_memory_bytes"] == 200 << 20


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_result_means_the_same_on_22_05_24_11_and_26_05(scenario):
    """What a task returns through XCom: the same keys and values whichever REST version the cluster speaks."""
    results = {}
    for version in ["v0.0.38", *older.MODERN, *NEWEST]:
        job, db = SCENARIOS[scenario]
        status = _only(rest_api.parse_jobs(load_fixture(job, version)))
        record = _only(rest_api.parse_db_job(load_fixture(db, version)))
        result = build_result(
            record["job_id"],
            accounting=record,
            state=status.state,
            exit_code=status.exit_code,
            requested={"memory": record["requested_memory_bytes"]},
        )
        results[version] = {k: result[k] for k in ("state", "exit_code", "signal", "failure")}
    assert all(r == results["v0.0.38"] for r in results.values()), results


@pytest.mark.parametrize("version", NEWEST)
def test_partitions_and_nodes(version):
    parts = rest_api.parse_partitions(load_fixture("partitions", version))
    assert {name: (p["state"], p["max_time_seconds"]) for name, p in parts.items()} == {
        "debug": ("UP", 3600),
        "long": ("UP", 86400),
    }
    assert with_default_partition(parts, "debug")["debug"]["default"] is True
    (node,) = rest_api.parse_nodes(load_fixture("nodes", version))
    assert (node["name"], node["partition"], node["cpus_total"]) == ("vm", "debug,long", 256)


@pytest.mark.parametrize("version", NEWEST)
def test_a_refused_token_is_a_credentials_error(version):
    recorded = {name: load_fixture(name, version) for name in ("error_bad_token", "error_bad_token_submit")}

    def transport(name: str) -> RestTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            return httpx.Response(recorded[name]["_http_status"], json=recorded[name]["body"])

        client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://head:6840")
        return RestTransport("http://head:6840", "hpcai", lambda: "stale", api_version=version, client=client)

    with pytest.raises(TransportError) as polled:
        transport("error_bad_token").statuses(["1"])
    with pytest.raises(TransportError) as submitted:
        transport("error_bad_token_submit").submit(JobSpec(name="j", script="true"), "/w")
    for err in (polled.value, submitted.value):
        assert err.credentials and not err.retryable and "scontrol token" in str(err)


def test_auto_picks_the_newest_version_26_05_lists():
    assert rest_api.served_versions(openapi()) == {"v0.0.42", *NEWEST}

    def handle(request: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(200, json=openapi()) if request.url.path == "/openapi/v3" else httpx.Response(404)
        )

    rest = RestTransport(
        "http://head:6840",
        "hpcai",
        lambda: "t",
        client=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://head:6840"),
    )
    assert rest.version == "v0.0.45"


@pytest.mark.parametrize("version", NEWEST)
@pytest.mark.parametrize("spec", sorted(older.SPECS))
def test_submit_bodies_match_the_26_05_openapi_document(version, spec, monkeypatch):
    monkeypatch.setattr(older, "openapi", openapi)  # schema_problems resolves $ref in this document
    schema = openapi()["paths"][f"/slurm/{version}/job/submit"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    body = rest_api.submit_body(older.SPECS[spec], "/scratch/w", version)
    assert older.schema_problems(body, schema["schema"]) == []


def test_recorded_submissions_were_accepted(monkeypatch):
    """The capture submitted rest_api.submit_body(...) to the real 26.05 server: all were accepted."""
    monkeypatch.setattr(older, "openapi", openapi)
    for version in NEWEST:
        body = load_fixture("job_submit_request", version)
        schema = openapi()["paths"][f"/slurm/{version}/job/submit"]["post"]["requestBody"]["content"]
        assert older.schema_problems(body, schema["application/json"]["schema"]) == []
        assert load_fixture("job_submit_response", version)["errors"] == []


def test_fixture_files_stay_small_and_hold_no_token():
    for path in [*FIXTURES.parent.glob("v0.0.4[345]/*.json"), OPENAPI]:
        assert path.stat().st_size < 1 << 20, path
        if path.suffix == ".json":
            assert "eyJ" not in path.read_text(), f"{path} holds a JWT"


# ------------------------------------------------------------------------------------ status queries
def _rest_on(server: FakeSlurmRestServer) -> RestTransport:
    return RestTransport("http://head:6840", "hpcai", lambda: server.token, client=server.client("http://head:6840"))


def _requests(server: FakeSlurmRestServer) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in server.requests if r.url.path != "/openapi/v3"]


@pytest.mark.parametrize("version", ["v0.0.42", "v0.0.45"])
def test_status_query_asks_only_for_our_jobs_where_jobs_state_is_served(version):
    """One GET /jobs/state/ for every job waited on, then a job's own record only once it ended:
    never GET /jobs, which makes the controller serialise every user's jobs (77-83 MB per poll
    with 10,000 foreign jobs, docs/benchmarks.md)."""
    server = FakeSlurmRestServer(version=version)
    ids = [server.cluster.submit(JobSpec(name=f"j{i}", script="true"), "/w") for i in range(20)]
    server.cluster.advance(steps=1)
    server.cluster.finish(ids[3], "oom")
    server.cluster.finish(ids[7], "completed")
    rest = _rest_on(server)
    server.requests.clear()
    seen = rest.statuses([*ids, "999999"])
    assert _requests(server) == [f"GET /slurm/{version}/jobs/state/", f"GET /slurm/{version}/job/{ids[3]}",
                                 f"GET /slurm/{version}/job/{ids[7]}", f"GET /slurm/{version}/job/999999"]
    (state_query,) = [r for r in server.requests if r.url.path.endswith("/jobs/state/")]
    assert len(state_query.url.params.get_list("job_id")) == 21
    assert set(seen) == set(ids)
    assert seen[ids[3]].state == "FAILED" and seen[ids[3]].exit_code is not None
    assert seen[ids[7]].state == "COMPLETED" and seen[ids[0]].phase is Phase.ACTIVE


@pytest.mark.parametrize(("version", "served"), [("v0.0.38", True), ("v0.0.42", False)])
def test_status_query_falls_back_to_jobs_without_jobs_state(version, served):
    server = FakeSlurmRestServer(version=version)
    server.job_states = served and version != "v0.0.38"
    ids = [server.cluster.submit(JobSpec(name=f"j{i}", script="true"), "/w") for i in range(3)]
    rest = _rest_on(server)
    _ = rest.version
    server.requests.clear()
    assert set(rest.statuses(ids)) == set(ids)
    assert [p for p in _requests(server) if not p.endswith("/ping")] == [f"GET /slurm/{version}/jobs"]


def test_an_empty_query_asks_nothing():
    server = FakeSlurmRestServer(version="v0.0.45")
    assert _rest_on(server).statuses([]) == {} and _requests(server) == []
