"""Credentials stay out of errors, logs, XCom and trigger state.

The Slurm JWT (a connection's password) is checked against every way a REST failure can
surface; the SSH key's path and contents against a failing SSH connection.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_hpcai.exceptions import HpcAiError, TransportError
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.spec import JobSpec, make_tag

TOKEN = "eyJhbGciOiJIUzI1NiJ9.hostile-secret-token.c2lnbmF0dXJl"
KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-KEY-MATERIAL-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"


def _leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s and s in text]


def _error_server(status: int, body: bytes, echo: bool = False) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if echo:  # a (misbehaving) server that quotes the request back
            headers = dict(request.headers)
            return httpx.Response(status, json={"errors": [{"description": f"bad request {headers}",
                                                            "error_number": 1}]})
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://slurm-head:6820")


ERRORS = [
    (401, b'{"errors": [{"description": "Authentication failure", "error_number": 1}]}'),
    (403, b"forbidden"),
    (500, b'{"errors": [{"description": "slurmctld config is unable to load", "error_number": 1007}]}'),
    (503, b"<html>down</html>"),
    (422, b'{"errors": ["not a dict"]}'),
]


@pytest.mark.parametrize(("status", "body"), ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_rest_errors_never_show_the_token(status: int, body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: TOKEN, api_version="v0.0.38",
                              client=_error_server(status, body))
    calls = [lambda: transport.submit(JobSpec(name="s", script="true", tag=make_tag("d", "t", "r")), "/tmp"),
             lambda: transport.statuses(["1"]), lambda: transport.cancel("1"), lambda: transport.accounting(["1"]),
             lambda: transport.nodes()]
    for call in calls:
        with pytest.raises(HpcAiError) as info:
            call()
        err = info.value
        text = " ".join([str(err), repr(err), str(getattr(err, "command", "")), str(getattr(err, "stderr", "")),
                         str(getattr(err, "stdout", ""))])
        assert not _leaks(text, TOKEN), text
    assert not _leaks(caplog.text, TOKEN)
    assert not _leaks(repr(transport) + repr(vars(transport)), TOKEN)


def test_unreachable_rest_server_errors_never_show_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://slurm-head:6820")
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: TOKEN, client=client)
    with pytest.raises(TransportError) as info:
        transport.partitions()
    assert info.value.retryable and not _leaks(str(info.value) + repr(info.value), TOKEN)


def test_a_server_quoting_the_request_cannot_leak_the_token() -> None:
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: TOKEN, api_version="v0.0.38",
                              client=_error_server(400, b"", echo=True))
    with pytest.raises(TransportError) as info:
        transport.nodes()
    assert not _leaks(str(info.value), TOKEN)


@pytest.fixture()
def rest_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {"conn_type": "slurm", "login": "hpcai", "password": TOKEN,
            "extra": {"transport": "rest", "base_url": "http://127.0.0.1:9", "api_version": "v0.0.38",
                      "work_dir": "/tmp"}}
    monkeypatch.setenv("AIRFLOW_CONN_HOSTILE_REST", json.dumps(conn))
    return "hostile_rest"


def test_trigger_state_and_hook_never_hold_the_token(rest_connection: str) -> None:
    from airflow_provider_hpcai.backends.base import JobRef
    from airflow_provider_hpcai.backends.slurm import SlurmBackend
    from airflow_provider_hpcai.triggers.job import JobTrigger

    backend = SlurmBackend(rest_connection)
    ref = JobRef("slurm", "42", make_tag("d", "t", "r"), "/tmp/hpcai-42.out", "/tmp/hpcai-42.err",
                 {"workdir": "/tmp", "conn_id": rest_connection})
    trigger = JobTrigger.for_job(backend, ref, poll_interval=5, echo={"ref": ref.to_dict(), "requested": {"memory": 1}})
    classpath, kwargs = trigger.serialize()
    assert not _leaks(json.dumps(kwargs) + classpath, TOKEN)
    assert kwargs["conn_id"] == rest_connection  # the trigger rebuilds its backend from the connection id
    assert not _leaks(repr(backend.hook) + repr(vars(backend.hook)), TOKEN)


def test_a_failing_rest_connection_logs_no_token(rest_connection: str, caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_hpcai.hooks.slurm import SlurmHook

    caplog.set_level(logging.DEBUG)
    hook = SlurmHook(rest_connection)
    hook.sleep = lambda _s: None
    ok, message = hook.test_connection()
    assert not ok and not _leaks(message, TOKEN)
    with pytest.raises(HpcAiError) as info:
        hook.submit(JobSpec(name="s", script="true", tag=make_tag("d", "t", "r")))
    assert not _leaks(str(info.value) + repr(info.value), TOKEN)
    assert not _leaks(caplog.text, TOKEN)


def test_operator_result_xcom_and_logs_hold_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """A whole task through the REST transport (fake slurmrestd): result, XCom and log are clean."""
    from airflow.sdk import DAG

    from airflow_provider_hpcai.backends.slurm import SlurmBackend
    from airflow_provider_hpcai.hooks.slurm import SlurmHook
    from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
    from tests.fakes.slurm import FakeSlurmTransport
    from tests.fakes.slurmrestd import FakeSlurmRestServer
    from tests.support import make_context

    caplog.set_level(logging.DEBUG)
    server = FakeSlurmRestServer(FakeSlurmTransport(), token=TOKEN)
    handle = server.handle

    def advancing(request: httpx.Request) -> httpx.Response:  # each status query moves the job one step
        if request.method == "GET" and request.url.path.endswith("/jobs"):
            server.cluster.advance()
        return handle(request)

    server.handle = advancing  # type: ignore[method-assign]
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: TOKEN, client=server.client(),
                              workdir="/tmp")
    hook = SlurmHook(transport=transport)
    hook.sleep = lambda _s: None
    with DAG("hostile_secrets", schedule=None):
        op = SlurmJobOperator(task_id="t", script="echo hi", deferrable=False, poll_interval=0.01,
                              environment={"NOT_A_SECRET": "x"})
    op.get_backend = lambda: SlurmBackend(hook=hook)  # type: ignore[method-assign]
    import airflow_provider_hpcai.backends.slurm as slurm_backend

    slurm_backend.ACCOUNTING_WAIT_SECONDS, saved = 0.0, slurm_backend.ACCOUNTING_WAIT_SECONDS
    try:
        context = make_context()
        result = op.execute(context)
    finally:
        slurm_backend.ACCOUNTING_WAIT_SECONDS = saved
    assert result["state"] == "COMPLETED"
    dumped = json.dumps(result, default=str) + json.dumps(context["ti"].xcom, default=str) + json.dumps(
        context["task_state_store"].data, default=str)
    assert not _leaks(dumped, TOKEN)
    assert not _leaks(caplog.text, TOKEN)
    sent = [r for r in server.requests if r.headers.get("X-SLURM-USER-TOKEN") == TOKEN]
    assert sent, "the token was not sent where it belongs (the request header)"


@pytest.mark.parametrize("how", ["key_file", "private_key"])
def test_ssh_failures_never_show_the_key(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_hpcai.slurm.cli_transport import SshRunner

    caplog.set_level(logging.DEBUG)
    key = tmp_path / "secret-key-path-id_ed25519"
    key.write_text(KEY_TEXT)
    key.chmod(0o600)
    extra: dict[str, Any] = {"no_host_key_check": True, "conn_timeout": 2}
    extra[how] = str(key) if how == "key_file" else KEY_TEXT
    monkeypatch.setenv("AIRFLOW_CONN_HOSTILE_SSH", json.dumps(
        {"conn_type": "ssh", "host": "127.0.0.1", "port": 9, "login": "hpcai", "extra": extra}))
    runner = SshRunner("hostile_ssh")
    with pytest.raises(HpcAiError) as info:
        runner.run(["squeue", "--me"])
    text = str(info.value) + repr(info.value) + caplog.text
    assert not _leaks(text, str(key), "SECRET-KEY-MATERIAL"), text
    assert "hostile_ssh" in str(info.value)  # it still says which connection failed
