"""SlurmHook over the fake cluster, build_transport, and CliTransport over the fake CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_hpcai.exceptions import ConfigurationError, ControllerUnavailableError, TransportError
from airflow_provider_hpcai.hooks.slurm import SlurmHook, build_transport
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, LocalRunner, SshRunner
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.fakes.slurm_cli import FakeSlurmCli

TAG = make_tag("dag", "task", "run-1")


def _spec(**overrides) -> JobSpec:
    fields = {"name": "train", "script": "python train.py", "tag": TAG, "resources": Resources(memory="1G")}
    fields.update(overrides)
    return JobSpec(**fields)


# ------------------------------------------------------------------------------------ submit
def test_submit_creates_the_workdir_and_keeps_the_built_script(cluster, sleeps):
    hook = SlurmHook(transport=cluster)
    job_id = hook.submit(_spec(), workdir="/scratch/run1")
    job = cluster.job(job_id)
    assert cluster.dirs == ["/scratch/run1"] and job.workdir == "/scratch/run1"
    assert "#SBATCH --mem=1024M" in job.script and job.script.rstrip().endswith("python train.py")
    assert job.spec.tag == TAG and sleeps == []


def test_submit_adopts_the_tagged_job_when_sbatch_fails_transiently_after_submitting(cluster, sleeps):
    cluster.fail_next(1, ops=["submit"], after_effect=True)  # the job went in; the answer was lost
    job_id = SlurmHook(transport=cluster).submit(_spec(), workdir="/w")
    assert list(cluster.jobs) == [job_id] and cluster.submissions == 1  # no duplicate job
    assert cluster.job(job_id).tag == TAG and sleeps == []


def test_submit_retries_a_transient_failure_that_submitted_nothing(cluster, sleeps):
    cluster.fail_next(2, ops=["submit"])
    job_id = SlurmHook(transport=cluster).submit(_spec(), workdir="/w")
    assert list(cluster.jobs) == [job_id] and cluster.submissions == 3 and len(sleeps) == 2


def test_submit_does_not_retry_a_rejected_job(cluster, sleeps):
    cluster.fail_next(1, ops=["submit"], retryable=False,
                      stderr="sbatch: error: Batch job submission failed: Invalid partition name specified")
    with pytest.raises(TransportError, match="Invalid partition name") as info:
        SlurmHook(transport=cluster).submit(_spec(), workdir="/w")
    assert not isinstance(info.value, ControllerUnavailableError) and cluster.jobs == {} and sleeps == []


def test_submit_gives_up_after_the_retry_budget(cluster, sleeps):
    cluster.fail_next(50, ops=["submit"])
    with pytest.raises(ControllerUnavailableError, match="sbatch failed 8 times"):
        SlurmHook(transport=cluster).submit(_spec(), workdir="/w")
    assert cluster.submissions == 8 and len(sleeps) == 7


def test_untagged_submission_cannot_be_adopted(cluster, sleeps):
    cluster.fail_next(1, ops=["submit"], after_effect=True)
    SlurmHook(transport=cluster).submit(_spec(tag=None), workdir="/w")
    assert len(cluster.jobs) == 2  # why every provider submission carries a tag


def test_find_live_job_ignores_finished_and_foreign_jobs(cluster):
    hook = SlurmHook(transport=cluster)
    old = cluster.submit(_spec(), "/w")
    cluster.finish(old, "failed")
    cluster.submit(_spec(tag=make_tag("other", "task", "run")), "/w")
    assert hook.find_live_job(TAG) is None
    live = cluster.submit(_spec(), "/w")
    newer = cluster.submit(_spec(), "/w")
    assert hook.find_live_job(TAG).job_id == newer
    assert [s.job_id for s in hook.find_jobs_by_tag(TAG)] == [newer, live, old]


# ------------------------------------------------------------------------------------ watching
def test_statuses_in_one_query_with_accounting_for_purged_jobs(cluster):
    hook = SlurmHook(transport=cluster)
    a, b, c = (cluster.submit(_spec(), "/w") for _ in range(3))
    cluster.finish(b, "completed")
    cluster.vanish(b, from_accounting=False)
    cluster.vanish(c)
    statuses = hook.get_statuses([a, b, c])
    assert statuses[a].phase is Phase.ACTIVE and statuses[b].state == "COMPLETED" and c not in statuses
    assert cluster.status_queries == 1 and cluster.calls["accounting"] == 1
    assert hook.get_statuses([]) == {} and cluster.status_queries == 1


def test_get_status_rides_out_a_short_outage(cluster, sleeps):
    job_id = cluster.submit(_spec(), "/w")
    cluster.fail_next(2, ops=["statuses"])
    assert SlurmHook(transport=cluster).get_status(job_id).state == "PENDING" and len(sleeps) == 2


def test_cancel_accounting_output_and_cluster_views(cluster, sleeps):
    hook = SlurmHook(transport=cluster)
    cluster.script_outcomes("oom")
    job_id = hook.submit(_spec(), workdir="/w")
    cluster.run_to_end(job_id)
    record = hook.get_accounting(job_id)
    assert record["state"] == "FAILED" and record["signal"] == 9 and record["max_rss_bytes"] == 2 * 1024**3
    assert hook.get_accounting("999") == {}
    cluster.emit(job_id, "hello\nworld\n")
    path = cluster.job(job_id).stdout_path
    assert hook.read_output(path) == b"hello\nworld\n" and hook.read_output(path, 6) == b"world\n"
    assert hook.read_output("/nowhere") == b""
    running = hook.submit(_spec(), workdir="/w")
    hook.cancel(running)
    assert cluster.job(running).base_state == "CANCELLED"
    hook.cancel(job_id)  # already ended: no error
    view = hook.cluster_status()
    assert view["transport"] == "fake" and {j["job_id"] for j in view["jobs"]} == {job_id, running}
    assert view["nodes"][0]["name"] == "node1" and {p["name"] for p in view["partitions"]} == {"debug", "gpu"}
    assert hook.partition_limits()["gpu"]["max_time_seconds"] == 2 * 86400
    ok, message = hook.test_connection()
    assert ok and "partitions: debug, gpu" in message


def test_test_connection_reports_failure(cluster):
    cluster.fail_next(1, ops=["partitions"], retryable=False, stderr="scontrol: error: permission denied")
    ok, message = SlurmHook(transport=cluster).test_connection()
    assert not ok and "permission denied" in message


def test_hook_applies_the_connections_default_partition(cluster, sleeps):
    hook = SlurmHook(transport=cluster)
    hook._extras = {"partition": "gpu", "work_dir": "/scratch/default"}  # as a connection's extras would
    job_id = hook.submit(_spec())
    job = cluster.job(job_id)
    assert job.spec.resources.partition == "gpu" and job.workdir == "/scratch/default"
    explicit = hook.submit(_spec(resources=Resources(partition="debug")), workdir="/w")
    assert cluster.job(explicit).spec.resources.partition == "debug"


# ------------------------------------------------------------------------------------ connections
def test_build_transport_local_and_ssh():
    local = build_transport({}, login=None, password=None)
    assert isinstance(local, CliTransport) and local.name == "local" and isinstance(local.runner, LocalRunner)
    ssh = build_transport({"transport": "SSH", "ssh_conn_id": "ssh_cluster"}, login=None, password=None)
    assert ssh.name == "ssh" and isinstance(ssh.runner, SshRunner) and ssh.runner.ssh_conn_id == "ssh_cluster"


@pytest.mark.parametrize(("extras", "login", "password", "message"), [
    ({"transport": "ssh"}, None, None, "needs the extra 'ssh_conn_id'"),
    ({"transport": "rest"}, "hpcai", "tok", "needs the extra 'base_url'"),
    ({"transport": "rest", "base_url": "http://h:6820"}, None, "tok", "Slurm user as login"),
    ({"transport": "rest", "base_url": "http://h:6820"}, "hpcai", None, "JWT as password or an extra 'token_file'"),
    ({"transport": "rest", "base_url": "http://h:6820", "api_version": "v9"}, "hpcai", "t", "not supported"),
    ({"transport": "carrier-pigeon"}, None, None, "use 'rest', 'ssh' or 'local'"),
])
def test_build_transport_errors_say_what_is_missing(extras, login, password, message):
    with pytest.raises(ConfigurationError, match=message):
        build_transport(extras, login=login, password=password)


def test_build_transport_rest_rereads_a_rotated_token_file(tmp_path: Path):
    token_file = tmp_path / "jwt"
    token_file.write_text("first\n")
    rest = build_transport({"transport": "rest", "base_url": "http://h:6820/", "token_file": str(token_file),
                            "api_version": "v0.0.38", "work_dir": "/scratch", "log_ssh_conn_id": "ssh_logs"},
                           login="hpcai", password=None)
    assert isinstance(rest, RestTransport) and rest.version == "v0.0.38" and rest.default_workdir() == "/scratch"
    assert rest.base_url == "http://h:6820" and isinstance(rest.file_reader, SshRunner)
    assert rest._token() == "first"
    token_file.write_text("second\n")
    assert rest._token() == "second"


def test_hook_reads_its_connection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_REST_TEST", json.dumps({
        "conn_type": "slurm", "login": "hpcai", "password": "jwt",
        "extra": {"transport": "rest", "base_url": "http://h:6820", "api_version": "v0.0.40", "work_dir": "/scr",
                  "partition": "gpu"}}))
    hook = SlurmHook("slurm_rest_test")
    assert isinstance(hook.get_conn(), RestTransport) and hook.transport_name == "rest"
    assert hook.workdir() == "/scr" and hook.workdir("/mine") == "/mine" and hook.default_partition() == "gpu"


def test_hook_without_its_connection(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ConfigurationError, match="no Airflow connection 'slurm_nowhere'"):
        SlurmHook("slurm_nowhere").get_conn()
    monkeypatch.delenv("AIRFLOW_CONN_SLURM_DEFAULT", raising=False)
    assert SlurmHook().transport_name == "local"  # no slurm_default: the CLI on this host


# ------------------------------------------------------------------------------------ CliTransport
def test_cli_transport_over_the_fake_commands():
    cli = FakeSlurmCli()
    cluster = cli.cluster
    transport = CliTransport(cli, name="ssh")
    assert transport.default_workdir() == "/home/hpcai/.hpcai/jobs"
    transport.ensure_dir("/scratch/my dir")
    assert cli.argvs[-1] == ["mkdir", "-p", "--", "/scratch/my dir"]
    ids = [transport.submit(_spec(), "/w") for _ in range(3)]
    assert cli.argvs[-1] == ["sbatch", "--parsable"] and cli.stdins[-1].startswith("#!/bin/bash")
    assert cluster.job(ids[0]).tag == TAG and cluster.job(ids[0]).requested_memory_bytes == 1024**3
    statuses = transport.statuses(ids)
    queries = [a for a in cli.argvs if a[0] == "squeue" and "--version" not in a]
    assert len(queries) == 1 and "--only-job-state" not in queries[0]  # three jobs, one squeue (22.05)
    assert {s.tag for s in statuses.values()} == {TAG} and statuses[ids[0]].state == "PENDING"
    cluster.script_outcomes("failed")
    cluster.run_to_end()
    assert transport.my_jobs()[ids[1]].state == "COMPLETED"
    record = transport.accounting(ids)
    assert record[ids[0]]["tag"] == TAG and {r["state"] for r in record.values()} == {"COMPLETED"}
    transport.cancel(ids[0])
    assert cli.argvs[-1] == ["scancel", ids[0]]
    assert transport.nodes()[1]["cpus_idle"] == 4 and transport.partitions()["debug"]["default"] is True


def test_cli_transport_many_jobs_and_unknown_jobs():
    cli = FakeSlurmCli()
    transport = CliTransport(cli)
    ids = [cli.cluster.submit(_spec(), "/w") for _ in range(1200)]
    assert len(transport.statuses(ids)) == 1200
    assert [a[0] for a in cli.argvs if "--version" not in a].count("squeue") == 3  # chunks of 500 ids
    assert transport.statuses(["77", "78"]) == {}  # squeue: "Invalid job id specified" means none known


def test_cli_transport_outage_is_retryable_and_keeps_the_details():
    cli = FakeSlurmCli()
    cli.down = True
    with pytest.raises(TransportError) as info:
        CliTransport(cli).statuses(["1"])
    assert info.value.retryable and info.value.command.startswith("squeue --noheader")
    assert "Unable to contact slurm controller" in info.value.stderr and info.value.returncode == 1


def test_local_runner_reads_files_and_reports_missing_programs(tmp_path: Path):
    runner = LocalRunner()
    (tmp_path / "out").write_bytes(b"abcdef")
    assert runner.read_file(str(tmp_path / "out"), 2, 3) == b"cde"
    assert runner.read_file(str(tmp_path / "missing"), 0, 10) == b""
    with pytest.raises(TransportError, match="not installed on this host"):
        runner.run(["definitely-not-sbatch-xyz"])
    assert runner.run(["printf", "%s", "a b"]).stdout == "a b"  # argv, no shell


def test_triggers_on_one_connection_share_one_hook():
    from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook
    from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger

    first, second = SlurmJobTrigger("1", "slurm_a"), SlurmJobTrigger("2", "slurm_a")
    assert first._hook() is second._hook() is AsyncSlurmHook.shared("slurm_a")
    assert SlurmJobTrigger("3", "slurm_b")._hook() is not first._hook()


def test_a_rotated_token_is_picked_up_by_the_same_hook(monkeypatch, cluster, sleeps):
    """The triggerer's hook lives for days; an admin who rotates the JWT in the connection must not fail its tasks."""
    import httpx

    from airflow_provider_hpcai.slurm import rest_transport
    from tests.fakes.slurmrestd import FakeSlurmRestServer

    server = FakeSlurmRestServer(cluster, token="new-jwt-token-after-rotation")
    job_id = cluster.submit(JobSpec(name="j", script="true"), "/w")
    real = httpx.Client
    monkeypatch.setattr(rest_transport.httpx, "Client",
                        lambda **kw: real(base_url=kw["base_url"], transport=server.transport()))
    conn = {"conn_type": "slurm", "login": "hpcai", "password": "old-expired-jwt-token",
            "extra": {"transport": "rest", "base_url": "http://slurm-head:6820", "api_version": "v0.0.38"}}
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROT", json.dumps(conn))
    hook = SlurmHook("slurm_rot")
    with pytest.raises(TransportError) as refused:
        hook.get_statuses([job_id])  # re-read once: still the old token, so it fails, with a clear message
    assert refused.value.credentials and "scontrol token" in str(refused.value)
    assert "old-expired-jwt-token" not in str(refused.value)

    conn["password"] = "new-jwt-token-after-rotation"  # the admin updates the connection
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_ROT", json.dumps(conn))
    assert hook.get_statuses([job_id])[job_id].job_id == job_id  # the same hook object, no restart
    assert hook.partition_limits()  # and every other call through _retry


def test_refused_credentials_of_an_injected_transport_are_not_reloaded(cluster):
    calls = []

    def refuse(job_ids):
        calls.append(job_ids)
        raise TransportError("slurmrestd answered 401: nope", credentials=True)

    cluster.statuses = refuse
    with pytest.raises(TransportError):
        SlurmHook(transport=cluster).get_statuses(["1"])
    assert len(calls) == 1


def test_cli_status_query_is_the_light_rpc_on_24_05_and_later():
    """squeue --only-job-state on a modern Slurm: its controller cost does not grow with others' jobs."""
    cli = FakeSlurmCli()
    cli.version = "24.11.5"
    transport = CliTransport(cli, name="local")
    ids = [transport.submit(_spec(), "/w") for _ in range(3)]
    first = transport.statuses(ids)
    transport.statuses(ids)
    queries = [a for a in cli.argvs if a[0] == "squeue"]
    assert [a for a in queries if "--version" in a] == [["squeue", "--version"]]  # asked once
    assert all("--only-job-state" in a for a in queries if "--version" not in a)
    assert {s.state for s in first.values()} == {"PENDING"} and {s.reason for s in first.values()} == {""}


def test_a_controller_outage_is_retryable_on_the_light_squeue_too():
    """24.11's squeue --only-job-state says only "Unable to query jobs state" while slurmctld is
    down: an outage to ride out within the budget, not a failed task."""
    cli = FakeSlurmCli()
    cli.version = "24.11.5"
    transport = CliTransport(cli)
    job_id = transport.submit(_spec(), "/w")
    cli.down = True
    with pytest.raises(TransportError) as info:
        transport.statuses([job_id])
    assert info.value.retryable and "--only-job-state" in info.value.command
