"""Each transport acting as a user, with fakes at one seam (connections, the HTTP client, the backend)."""

from __future__ import annotations

import types

import httpx
import pytest

from airflow_provider_hpcai.exceptions import ConfigurationError, TransportError
from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook, build_transport
from airflow_provider_hpcai.identity.mapping import RunAsRefusedError
from airflow_provider_hpcai.identity.runners import SudoRunner, UserSshRunner
from airflow_provider_hpcai.identity.transports import UserCliTransport, UserRestTransport
from tests.support import make_context

REST = {"transport": "rest", "base_url": "http://slurm.invalid:6820"}


@pytest.fixture(autouse=True)
def allowlist(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_USERS", "hpc-alice,hpc-bob")
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_MAPPING", "alice=hpc-alice,bob=hpc-bob")
    for key in ("RUN_AS_REST_TOKEN_CONN_ID", "RUN_AS_UNMAPPED", "RUN_AS_WORK_DIR", "RUN_AS_SSH_CONN_ID"):
        monkeypatch.delenv(f"AIRFLOW__HPCAI__{key}", raising=False)
    return monkeypatch


def connections(**conns):
    def get(conn_id):
        if conn_id not in conns:
            raise KeyError(conn_id)
        login, password = conns[conn_id]
        return types.SimpleNamespace(login=login, password=password)
    return get


def recorded(transport: UserRestTransport) -> list[httpx.Request]:
    """Route the transport's HTTP client to a recorder answering 200 / 401 (token 'stale')."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["X-SLURM-USER-TOKEN"] == "stale":
            return httpx.Response(401, json={"errors": [{"description": "Authentication failure"}]})
        return httpx.Response(200, json={"errors": []})

    transport._client = httpx.Client(base_url=transport.base_url, transport=httpx.MockTransport(answer))
    transport._version = "v0.0.38"
    return seen


def test_local_runs_the_cli_through_sudo_as_the_user():
    transport = build_transport({"transport": "local"}, login=None, password=None, run_as="hpc-alice")
    assert isinstance(transport, UserCliTransport) and isinstance(transport.runner, SudoRunner)
    assert transport.runner.user == "hpc-alice"


def test_rest_impersonates_with_the_connection_token():
    transport = build_transport(REST, login="slurm", password="privileged", run_as="hpc-bob",
                                get_connection=connections())
    seen = recorded(transport)
    transport.cancel("42")
    assert seen[0].headers["X-SLURM-USER-NAME"] == "hpc-bob"
    assert seen[0].headers["X-SLURM-USER-TOKEN"] == "privileged"
    assert isinstance(transport.file_reader, SudoRunner) and transport.file_reader.user == "hpc-bob"


def test_rest_impersonation_refused_says_what_the_token_must_be():
    transport = build_transport(REST, login="hpcai", password="stale", run_as="hpc-bob", get_connection=connections())
    recorded(transport)
    with pytest.raises(TransportError, match="SlurmUser's or root's") as err:
        transport.cancel("42")
    assert err.value.credentials and "stale" not in str(err.value)


def test_rest_per_user_tokens_come_from_the_users_connection(allowlist):
    allowlist.setenv("AIRFLOW__HPCAI__RUN_AS_REST_TOKEN_CONN_ID", "slurm_jwt_{user}")
    get = connections(**{"slurm_jwt_hpc-alice": ("hpc-alice", "alice-token")})
    transport = build_transport(REST, login="svc", password="service-token", run_as="hpc-alice", get_connection=get)
    seen = recorded(transport)
    transport.cancel("7")
    assert seen[0].headers["X-SLURM-USER-TOKEN"] == "alice-token"
    with pytest.raises(ConfigurationError, match="no Airflow connection 'slurm_jwt_hpc-bob'"):
        build_transport(REST, login="svc", password="service-token", run_as="hpc-bob", get_connection=get)
    wrong = connections(**{"slurm_jwt_hpc-alice": ("hpc-bob", "bob-token")})
    with pytest.raises(ConfigurationError, match="is for 'hpc-bob'"):
        build_transport(REST, login="svc", password="x", run_as="hpc-alice", get_connection=wrong)


def test_rest_output_is_read_over_the_users_ssh_connection_when_the_connection_says_so():
    get = connections(**{"ssh_hpc-alice": ("hpc-alice", None)})
    transport = build_transport({**REST, "log_ssh_conn_id": "ssh_logs"}, login="slurm", password="t",
                                run_as="hpc-alice", get_connection=get)
    assert isinstance(transport.file_reader, UserSshRunner) and transport.file_reader.ssh_conn_id == "ssh_hpc-alice"


def test_ssh_needs_the_users_own_login():
    get = connections(**{"ssh_hpc-alice": ("hpc-alice", None), "ssh_hpc-bob": ("hpcai", None)})
    transport = build_transport({"transport": "ssh", "ssh_conn_id": "ssh_shared"}, login=None, password=None,
                                run_as="hpc-alice", get_connection=get)
    assert isinstance(transport.runner, UserSshRunner) and transport.runner.ssh_conn_id == "ssh_hpc-alice"
    with pytest.raises(ConfigurationError, match="logs in as 'hpcai', not 'hpc-bob'"):
        build_transport({"transport": "ssh"}, login=None, password=None, run_as="hpc-bob", get_connection=get)
    with pytest.raises(ConfigurationError, match="no Airflow connection 'ssh_hpc-alice'"):
        build_transport({"transport": "ssh"}, login=None, password=None, run_as="hpc-alice",
                        get_connection=connections())


def test_a_user_taken_off_the_allowlist_is_not_impersonated_any_more(allowlist):
    """A trigger or a retry carrying an old job's user is checked again when its transport is built."""
    allowlist.setenv("AIRFLOW__HPCAI__RUN_AS_USERS", "hpc-alice")
    allowlist.setenv("AIRFLOW__HPCAI__RUN_AS_MAPPING", "alice=hpc-alice")
    with pytest.raises(RunAsRefusedError, match="'hpc-bob' is not in"):
        build_transport({"transport": "local"}, login=None, password=None, run_as="hpc-bob")


def test_the_users_workdir_ignores_the_connections_shared_one(allowlist):
    allowlist.setenv("AIRFLOW__HPCAI__RUN_AS_WORK_DIR", "/scratch/{user}/hpcai")
    hook = SlurmHook("slurm_x", run_as="hpc-alice")
    hook._extras = {"transport": "local", "work_dir": "/tmp"}
    hook._transport = build_transport(hook._extras, login=None, password=None, run_as="hpc-alice")
    assert hook.workdir() == "/scratch/hpc-alice/hpcai"
    assert hook.workdir("/data/x") == "/data/x"


def test_triggerer_hooks_are_shared_per_connection_and_user():
    AsyncSlurmHook.reset_shared()
    try:
        alice = AsyncSlurmHook.shared("slurm_default", "hpc-alice")
        assert AsyncSlurmHook.shared("slurm_default", "hpc-alice") is alice
        assert AsyncSlurmHook.shared("slurm_default", "hpc-bob") is not alice
        assert AsyncSlurmHook.shared("slurm_default") is not alice
        assert alice.hook.run_as == "hpc-alice"
    finally:
        AsyncSlurmHook.reset_shared()


def test_the_job_reference_and_the_trigger_carry_the_user(monkeypatch):
    from airflow_provider_hpcai.backends.slurm import SlurmBackend
    from airflow_provider_hpcai.triggers import job as job_module

    backend = SlurmBackend("slurm_x", run_as="hpc-alice")
    ref = backend._ref("9", "/home/hpc-alice/.hpcai/jobs", False, "tag")
    assert ref.extra["run_as"] == "hpc-alice"
    built = {}
    monkeypatch.setattr("airflow_provider_hpcai.backends.get_backend",
                        lambda name, conn_id=None, **options: built.update(options) or backend)
    job_module.JobTrigger(ref=ref.to_dict(), conn_id="slurm_x")._backend()
    assert built == {"run_as": "hpc-alice"}


def _operator(owner: str, **kwargs):
    from airflow.sdk import DAG

    from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

    with DAG(dag_id="run_as_unit", schedule=None, default_args={"owner": owner}):
        return SlurmJobOperator(task_id="job", script="echo hi", deferrable=False, **kwargs)


def test_refusal_comes_before_anything_reaches_the_cluster(monkeypatch):
    touched = []
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend",
                        lambda *a, **k: touched.append((a, k)) or pytest.fail("the backend was built"))
    for owner, kwargs in (("root", {}), ("carol", {}), ("alice", {"run_as": "hpc-carol"})):
        with pytest.raises(RunAsRefusedError):
            _operator(owner, **kwargs).execute(make_context())
    assert touched == []


def test_the_operator_hands_the_mapped_user_to_the_backend(monkeypatch):
    built = []
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend",
                        lambda name, conn_id=None, **options: built.append(options) or pytest.skip("seen"))
    op = _operator("bob")
    assert op.job_user() == "hpc-bob"
    with pytest.raises(pytest.skip.Exception):
        op.get_backend()
    assert built == [{"run_as": "hpc-bob"}]


def test_run_as_on_a_backend_that_cannot_impersonate_is_refused():
    from airflow.sdk import DAG

    from airflow_provider_hpcai.operators.base import BaseJobOperator

    class EchoOperator(BaseJobOperator):
        def build_script(self, context):
            return "echo hi"

    with DAG(dag_id="run_as_unit_local", schedule=None, default_args={"owner": "alice"}):
        op = EchoOperator(task_id="job", backend="local", run_as="alice")
        plain = EchoOperator(task_id="plain", backend="local")
    with pytest.raises(RunAsRefusedError, match="local backend cannot run jobs as another user"):
        op.job_user()
    assert plain.job_user() is None  # the owner mapping is Slurm's; local jobs run as the worker
