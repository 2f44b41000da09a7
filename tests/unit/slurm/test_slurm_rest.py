"""slurmrestd: request bodies per version, parsers against captured responses, and
:class:`RestTransport` through the fake server at its HTTP seam."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_hpcai.exceptions import (
    ConfigurationError,
    HpcAiError,
    SlurmJobNotFound,
    SlurmOutOfMemory,
    TransportError,
)
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.outcome import build_result, failure_for
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.fakes.slurm import FakeSlurmTransport
from tests.fakes.slurmrestd import FakeSlurmRestServer, load_fixture

TOKEN = "secret-jwt-token"
TAG = make_tag("dag", "task", "run")


def _spec(**overrides) -> JobSpec:
    fields = {"name": "train", "script": "python train.py\n", "tag": TAG, "environment": {"SEED": "7"},
              "resources": Resources(nodes=2, ntasks=4, cpus_per_task=2, memory="1536M", gpus="a100:2",
                                     time_limit=3601, time_min="00:10:00", partition="gpu", account="proj",
                                     qos="high", constraint="a100"),
              "exclude_nodes": "node1,node2", "array": "0-3"}
    fields.update(overrides)
    return JobSpec(**fields)


def _transport(server: FakeSlurmRestServer, **kwargs) -> RestTransport:
    return RestTransport("http://slurm-head:6820", "hpcai", lambda: server.token, client=server.client(), **kwargs)


# ------------------------------------------------------------------------------------ bodies
def test_submit_body_v0_0_38_plain_numbers_and_environment_mapping():
    body = rest_api.submit_body(_spec(), "/scratch/w", "v0.0.38")
    job = body["job"]
    assert body["script"].startswith("#!/bin/bash\n") and "#SBATCH --comment=hpcai-tag=" + TAG in body["script"]
    assert job["environment"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "SEED": "7"}
    assert (job["nodes"], job["tasks"], job["cpus_per_task"]) == (2, 4, 2)
    assert job["time_limit"] == 61 and job["time_minimum"] == 10  # minutes, rounded up
    assert job["memory_per_node"] == 1536 and job["gres"] == "gpu:a100:2"
    assert job["exclude"] == "node1,node2" and job["array"] == "0-3" and job["constraints"] == "a100"
    assert job["comment"] == "hpcai-tag=" + TAG and job["current_working_directory"] == "/scratch/w"
    assert job["standard_output"] == "/scratch/w/hpcai-%A_%a.out"


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_submit_body_newer_versions_wrap_numbers_and_list_the_environment(version):
    body = rest_api.submit_body(_spec(), "/scratch/w", version)
    job = body["job"]
    assert job["environment"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "SEED=7"]
    assert job["time_limit"] == {"set": True, "infinite": False, "number": 61}
    assert job["memory_per_node"]["number"] == 1536 and job["nodes"] == "2"
    assert job["tres_per_node"] == "gres/gpu:a100:2" and job["excluded_nodes"] == ["node1", "node2"]
    if version == "v0.0.40":
        assert "script" in body and "script" not in job
    else:
        assert list(body) == ["job"] and job["script"].startswith("#!/bin/bash")


def test_the_connections_job_path_reaches_rest_jobs_and_is_checked():
    server = FakeSlurmRestServer()
    _transport(server, job_path="/opt/slurm/bin:/usr/bin:/bin").submit(_spec(array=None), "/scratch/w")
    env = server.bodies[-1]["job"]["environment"]  # what slurmrestd received
    assert env["PATH"] == "/opt/slurm/bin:/usr/bin:/bin" and env["SEED"] == "7"
    _transport(server).submit(_spec(array=None), "/scratch/w")
    assert server.bodies[-1]["job"]["environment"]["PATH"] == rest_api.DEFAULT_JOB_PATH
    for bad in ("relative/bin", "/usr/bin:bin", "/usr/bin\n/x", "/usr/bin::/bin"):
        with pytest.raises(ConfigurationError, match="job_path"):
            _transport(server, job_path=bad)


def test_unwrap():
    assert rest_api.unwrap({"set": True, "infinite": False, "number": 5}) == 5
    assert rest_api.unwrap({"set": False, "infinite": False, "number": 0}) is None
    assert rest_api.unwrap({"set": True, "infinite": True, "number": 0}) is None
    assert rest_api.unwrap(7) == 7 and rest_api.unwrap({"other": 1}) == {"other": 1}


# ------------------------------------------------------------------------------------ parsers on real v0.0.38
def test_parse_jobs_captured_v0_0_38():
    jobs = rest_api.parse_jobs(load_fixture("jobs"))
    assert {j: (s.state, s.exit_code) for j, s in jobs.items()} == {
        "13": ("COMPLETED", 0), "14": ("FAILED", 3), "15": ("FAILED", 137), "16": ("RUNNING", 0),
        "17": ("CANCELLED", 143)}
    assert jobs["14"].reason == "NonZeroExitCode" and jobs["16"].phase is Phase.ACTIVE
    assert rest_api.parse_submit(load_fixture("job_submit_response")) == "13"


def test_parse_submit_without_an_id_names_the_errors():
    with pytest.raises(ValueError, match="Unable to find JobId"):
        rest_api.parse_submit(load_fixture("error_job_not_found")["body"])


@pytest.mark.parametrize(
    ("fixture", "state", "exit_code", "signal", "failure"),
    # exit_code as a shell reports it (128 + signal); a time limit or DELETE shows its signal on the batch step
    [("ok", "COMPLETED", 0, None, None), ("exit3", "FAILED", 0, None, "failed"), ("oom", "FAILED", 137, 9, "oom"),
     ("timeout", "TIMEOUT", 143, 15, "timeout"), ("cancel", "CANCELLED", 143, 15, "cancelled")],
)
def test_parse_db_job_captured_v0_0_38_and_classification(fixture, state, exit_code, signal, failure):
    record = next(iter(rest_api.parse_db_job(load_fixture(f"slurmdb_job_{fixture}")).values()))
    assert (record["state"], record["exit_code"], record["signal"]) == (state, exit_code, signal)
    assert record["steps"][0]["step"] == "batch" and record["node_list"] == "vm"
    result = build_result(record["job_id"], accounting=record, state=state, exit_code=None,
                          requested={"memory": record["requested_memory_bytes"]})
    assert result["failure"] == failure


def test_db_oom_record_has_the_memory_evidence():
    record = rest_api.parse_db_job(load_fixture("slurmdb_job_oom"))["15"]
    assert record["requested_memory_bytes"] == 50 * 1024**2
    assert record["max_rss_bytes"] == 535539712 > record["requested_memory_bytes"]
    assert record["steps"][0]["state"] == "CANCELLED" and record["steps"][0]["signal"] == 9


def test_exit3_from_slurmdbd_v0_0_38_keeps_the_controllers_exit_code():
    # 22.05's dbv0.0.38 reports return_code 0 for a job that exited 3; the poller saw 3.
    record = rest_api.parse_db_job(load_fixture("slurmdb_job_exit3"))["14"]
    result = build_result("14", accounting=record, state="FAILED", exit_code=3, requested={})
    assert result["exit_code"] == 3 and failure_for(result).exit_code == 3


def test_parse_db_jobs_by_id_has_every_job():
    assert sorted(rest_api.parse_db_job(load_fixture("slurmdb_jobs_by_id"))) == ["13", "14", "15", "16", "17"]


def test_parse_nodes_and_partitions_captured_v0_0_38_basics():
    node = rest_api.parse_nodes(load_fixture("nodes"))[0]
    assert (node["name"], node["state"], node["cpus_total"], node["memory_mb"]) == ("vm", "mixed", 256, 23081)
    assert node["partition"] == "debug,long" and node["free_memory_mb"] == 21407
    parts = rest_api.parse_partitions(load_fixture("partitions"))
    assert sorted(parts) == ["debug", "long"] and parts["debug"]["state"] == "UP"


def test_parse_nodes_v0_0_38_idle_cpus():
    assert rest_api.parse_nodes(load_fixture("nodes"))[0]["cpus_idle"] == 255


def test_parse_partitions_v0_0_38_limits_and_default():
    parts = rest_api.parse_partitions(load_fixture("partitions"))
    assert parts["debug"]["max_time_seconds"] == 3600 and parts["long"]["max_time_seconds"] == 86400
    assert parts["debug"]["default"] is True and parts["long"]["default"] is False


def test_api_errors():
    assert rest_api.api_errors(load_fixture("error_bad_token")["body"]) == [
        "slurmctld config is unable to load (error -1)"]
    assert rest_api.api_errors({"errors": ["plain"]}) == ["plain"] and rest_api.api_errors({}) == []


# ------------------------------------------------------------------------------------ RestTransport over HTTP
@pytest.mark.parametrize("version", ["v0.0.38", "v0.0.40"])
def test_rest_transport_full_job_life(version):
    cluster = FakeSlurmTransport()
    server = FakeSlurmRestServer(cluster, version=version)
    rest = _transport(server)
    assert rest.version == version  # the newest version both speak, from the server's OpenAPI document
    confirm = ["/slurm/v0.0.38/ping"] if version == "v0.0.38" else []  # only 22.05's /ping refuses a bad token
    assert [r.url.path for r in server.requests] == ["/openapi/v3", *confirm]

    cluster.script_outcomes("failed")
    job_id = rest.submit(_spec(resources=Resources(memory="1G", time_limit=600), exclude_nodes="node9",
                               array=None), "/scratch/w")
    job = cluster.job(job_id)
    assert job.tag == TAG and job.requested_memory_bytes == 1024**3 and job.time_limit_seconds == 600
    assert server.bodies[-1]["job"]["current_working_directory"] == "/scratch/w"
    assert rest.statuses([job_id])[job_id].state == "PENDING"
    assert rest.my_jobs()[job_id].tag == TAG
    cluster.run_to_end()
    status = rest.job(job_id)
    assert (status.state, status.exit_code) == ("FAILED", 3)
    record = rest.accounting([job_id])[job_id]
    assert record["state"] == "FAILED" and record["tag"] == TAG
    result = build_result(job_id, accounting=record, state=status.state, exit_code=status.exit_code,
                          requested={"memory": 1024**3})
    assert (result["failure"], result["exit_code"]) == ("failed", 3)
    assert rest.nodes()[0]["name"] == "vm" and "debug" in rest.partitions()


@pytest.mark.parametrize("version", ["v0.0.38", "v0.0.40"])
def test_rest_transport_oom_is_classified_from_accounting_steps(version):
    cluster = FakeSlurmTransport()
    rest = _transport(FakeSlurmRestServer(cluster, version=version), api_version=version)
    cluster.script_outcomes("oom")
    job_id = rest.submit(_spec(resources=Resources(memory="512M"), array=None, exclude_nodes=None), "/w")
    cluster.run_to_end()
    status = rest.statuses([job_id])[job_id]
    record = rest.accounting([job_id])[job_id]
    assert record["signal"] == 9 and record["max_rss_bytes"] == 1024**3
    result = build_result(job_id, accounting=record, state=status.state, exit_code=status.exit_code,
                          requested={"memory": 512 * 1024**2})
    assert isinstance(failure_for(result), SlurmOutOfMemory)


def test_v0_0_40_server_rejects_a_v0_0_38_shaped_body():
    server = FakeSlurmRestServer(version="v0.0.40")
    client = server.client()
    body = rest_api.submit_body(_spec(), "/w", "v0.0.38")
    answer = client.post("/slurm/v0.0.40/job/submit", json=body,
                         headers={"X-SLURM-USER-NAME": "hpcai", "X-SLURM-USER-TOKEN": TOKEN})
    assert answer.status_code == 400 and "environment must be a list" in answer.text
    good = client.post("/slurm/v0.0.40/job/submit", json=rest_api.submit_body(_spec(), "/w", "v0.0.40"),
                       headers={"X-SLURM-USER-NAME": "hpcai", "X-SLURM-USER-TOKEN": TOKEN})
    assert good.status_code == 200 and rest_api.parse_submit(good.json())


def test_a_bad_token_is_refused_while_detecting_22_05():
    """22.05 answers a bad token with HTTP 500 everywhere; only /ping says it is the token (or a
    restarting controller: the same answer, so it is retried as well)."""
    server = FakeSlurmRestServer(version="v0.0.38")
    rest = RestTransport("http://slurm-head:6820", "hpcai", lambda: "stale", client=server.client())
    with pytest.raises(TransportError) as refused:
        _ = rest.version
    assert refused.value.credentials and "scontrol token" in str(refused.value)


def test_version_detection_probes_ping_where_there_is_no_openapi_document():
    server = FakeSlurmRestServer(version="v0.0.40")
    server.openapi = False
    assert _transport(server).version == "v0.0.40"
    assert [r.url.path for r in server.requests] == [
        "/openapi/v3", *(f"/slurm/v0.0.{n}/ping" for n in (45, 44, 43, 42, 41, 40))]


def test_rest_cancel_and_unknown_versions():
    cluster = FakeSlurmTransport()
    rest = _transport(FakeSlurmRestServer(cluster), api_version="v0.0.38")
    job_id = rest.submit(_spec(array=None), "/w")
    rest.cancel(job_id)
    assert cluster.job(job_id).base_state == "CANCELLED"
    with pytest.raises(ConfigurationError, match="api_version"):
        RestTransport("http://x", "u", lambda: "t", api_version="v0.0.37")
    none_spoken = FakeSlurmRestServer(version="v0.0.38")
    none_spoken.version = "v0.0.39"  # answers 404 for every supported version
    with pytest.raises(ConfigurationError, match="speaks none of"):
        _ = _transport(none_spoken).version


def test_rest_errors_keep_the_token_secret_and_say_what_happened():
    server = FakeSlurmRestServer()
    rest = RestTransport("http://slurm-head:6820", "hpcai", lambda: "wrong-token-XYZ", client=server.client(),
                         api_version="v0.0.38")
    with pytest.raises(TransportError) as info:
        rest.nodes()
    assert "wrong-token-XYZ" not in str(info.value) and "slurmctld config is unable to load" in str(info.value)
    assert server.requests[-1].headers["X-SLURM-USER-TOKEN"] == "wrong-token-XYZ"

    server.fail_next_status = [503, 401]
    rest = _transport(server, api_version="v0.0.38")
    with pytest.raises(TransportError) as outage:
        rest.nodes()
    assert outage.value.retryable and outage.value.returncode == 503
    with pytest.raises(TransportError) as auth:
        rest.nodes()
    assert not auth.value.retryable and "scontrol token" in str(auth.value)


def test_a_restarting_2205_controller_is_retried_not_failed_as_a_bad_token():
    """22.05's slurmrestd answers HTTP 500 "config is unable to load" both for a bad token and while
    slurmctld restarts: the hook re-reads the connection and retries with back-off, so a restart
    fails no call; a token that stays bad still fails, saying what to check."""
    from airflow_provider_hpcai.hooks.slurm import SlurmHook

    server = FakeSlurmRestServer(version="v0.0.38")
    real = server.token
    answers = iter(["restarting", "restarting", real])
    rest = RestTransport("http://slurm-head:6820", "hpcai", lambda: next(answers, real), client=server.client(),
                         api_version="v0.0.38")
    with pytest.raises(TransportError) as first:
        rest.nodes()
    assert first.value.retryable and first.value.credentials
    hook = SlurmHook(transport=rest)
    hook.sleep = lambda seconds: None
    assert hook.submit(_spec(array=None), workdir="/w")  # the second "restart" answer, then through
    stale = RestTransport("http://slurm-head:6820", "hpcai", lambda: "stale", client=server.client(),
                          api_version="v0.0.38")
    hook = SlurmHook(transport=stale)
    hook.sleep = lambda seconds: None
    with pytest.raises(HpcAiError, match="Last answer: .*unable to load.*scontrol token"):
        hook.submit(_spec(array=None), workdir="/w")


def test_rest_unreachable_is_retryable():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    rest = RestTransport("http://x:6820", "u", lambda: "t", api_version="v0.0.38",
                         client=httpx.Client(transport=httpx.MockTransport(refuse), base_url="http://x:6820"))
    with pytest.raises(TransportError) as info:
        rest.statuses(["1"])
    assert info.value.retryable and "unreachable" in str(info.value)


def test_rest_accounting_of_an_unknown_job_is_empty():
    rest = _transport(FakeSlurmRestServer(), api_version="v0.0.38")
    assert rest.accounting(["424242"]) == {}


def test_rest_unknown_job_is_not_found_and_cancelling_it_is_no_error():
    # 22.05 answers an unknown id with HTTP 500 and error 2017 (captured error_job_not_found.json)
    server = FakeSlurmRestServer()
    rest = _transport(server, api_version="v0.0.38")
    with pytest.raises(SlurmJobNotFound, match="999999"):
        rest.job("999999")
    rest.cancel("999999")
    assert [r.method for r in server.requests] == ["GET", "DELETE"]


def test_rest_submission_accepted_with_errors_is_cancelled_and_reported():
    cluster = FakeSlurmTransport()
    server = FakeSlurmRestServer(cluster)
    server.accept_with_errors = ["Invalid generic resource (gres) specification"]
    rest = _transport(server, api_version="v0.0.38")
    with pytest.raises(TransportError, match="rejected the job: Invalid generic resource") as info:
        rest.submit(_spec(array=None), "/w")
    assert not info.value.retryable
    (job,) = cluster.jobs.values()
    assert job.base_state == "CANCELLED"  # not left pending for ever


def test_submit_body_does_not_let_slurm_requeue_by_default():
    assert rest_api.submit_body(_spec(), "/w", "v0.0.38")["job"]["requeue"] is False
    assert rest_api.submit_body(_spec(requeue=True), "/w", "v0.0.40")["job"]["requeue"] is True


def test_rest_wrong_token_is_not_retried_as_an_outage():
    server = FakeSlurmRestServer(version="v0.0.40")  # an unambiguous refusal (22.05's: see below)
    rest = RestTransport("http://slurm-head:6820", "hpcai", lambda: "expired", client=server.client(),
                         api_version="v0.0.40")
    with pytest.raises(TransportError) as info:
        rest.nodes()
    assert info.value.credentials and not info.value.retryable


@pytest.mark.parametrize(("version", "key", "exclusive"), [
    ("v0.0.38", "exclusive", "exclusive"), ("v0.0.40", "exclusive", ["true"]),
    ("v0.0.41", "shared", ["none"]), ("v0.0.42", "shared", ["none"])])  # 0.0.41 deprecates "exclusive", 0.0.42 drops it
def test_submit_body_carries_placement_in_each_versions_shape(version, key, exclusive):
    spec = JobSpec(name="p", script="true", resources=Resources(nodes=2, ntasks=8, ntasks_per_node=4, exclusive=True,
                                                                  reservation="maint_1"))
    job = rest_api.submit_body(spec, "/scratch/w", version)["job"]
    assert (job["tasks_per_node"], job["reservation"], job[key]) == (4, "maint_1", exclusive)
    plain = rest_api.submit_body(JobSpec(name="p", script="true"), "/scratch/w", version)["job"]
    assert not {"tasks_per_node", "reservation", "exclusive", "shared"} & set(plain)
