"""The real ``airflow api-server`` answers its health check within 1 s while plugin requests hang (issue 20).

Starts Airflow 3.3's api-server on SQLite with the plugin, and a Slurm connection of type
``slurm`` whose slurmrestd is a TCP listener that accepts connections and never answers (the
"host that never answers" of the review). ``[hpcai] cluster_status_conn_ids`` allows it. While
50 requests for its status and the other worst requests are in flight, Airflow's own
``/api/v2/monitor/health`` must answer within 1 s, and a connection that is not allow-listed
(the metadata database's) is refused without being used.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import api_server_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def silent_host() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, silent_host: int) -> Iterator[dict[str, Any]]:
    """``airflow api-server`` with the plugin; yields its URL and an admin Bearer header."""
    home = tmp_path_factory.mktemp("airflow-liveness")
    plugins = home / "plugins"
    plugins.mkdir()
    (plugins / "hpcai_plugin.py").write_text((ROOT / "plugins" / "hpcai_plugin.py").read_text())
    password = secrets.token_urlsafe(12)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    hung = {"conn_type": "slurm", "login": "alice", "password": "not-a-real-token",
            "extra": {"transport": "rest", "base_url": f"http://127.0.0.1:{silent_host}", "api_version": "v0.0.40"}}
    env = api_server_env(home, port, dags=home / "dags", plugins=plugins, password=password,
                         AIRFLOW_CONN_SLURM_HUNG=json.dumps(hung),
                         AIRFLOW__HPCAI__CLUSTER_STATUS_CONN_IDS="slurm_hung",
                         AIRFLOW__HPCAI__TEMPLATES_DIR=str(home / "templates-repo"))
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    log = (home / "api-server.log").open("wb")
    proc = subprocess.Popen([AIRFLOW, "api-server"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (home / "api-server.log").read_text(errors="replace")[-4000:]
            time.sleep(1)
        else:
            pytest.fail("the api-server did not start: " + (home / "api-server.log").read_text(errors="replace")[-4000:])
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                           timeout=10).json()["access_token"]
        yield {"base": base, "auth": {"Authorization": f"Bearer {token}"}, "log": home / "api-server.log"}
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_health_answers_within_a_second_while_plugin_requests_hang(api_server: dict[str, Any]) -> None:
    base, auth = api_server["base"], api_server["auth"]
    json_headers = {**auth, "content-type": "application/json"}
    memory = json.dumps({"template": "hello-local", "params": {"greeting": "x"},
                         "resources": {"memory": "1" + " " * 900_000 + "x"}}).encode()
    answers: list[tuple[int, str]] = []
    client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))

    def hung() -> None:
        response = client.get(f"{base}/hpcai/api/cluster?conn_id=slurm_hung", headers=auth)
        answers.append((response.status_code, response.json()["detail"]))

    attacks = [hung] * 50 + [
        lambda: client.post(f"{base}/hpcai/api/advice", content=memory, headers=json_headers),
        lambda: client.post(f"{base}/hpcai/api/validate", content=b"[" * (1024 * 1024 - 16), headers=json_headers),
    ]
    threads = [threading.Thread(target=attack, daemon=True) for attack in attacks]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    times = []
    with httpx.Client(timeout=10) as health:
        for _ in range(10):
            start = time.perf_counter()
            assert health.get(f"{base}/api/v2/monitor/health").status_code == 200
            times.append(time.perf_counter() - start)
            time.sleep(0.1)
    for thread in threads:
        thread.join(60)
    client.close()
    assert max(times) < 1.0, f"Airflow's health check took {max(times):.2f}s while plugin requests hung"
    assert len(answers) == 50 and {code for code, _ in answers} == {503}, answers
    assert all("has not answered within" in detail for _, detail in answers), "the host was meant to hang"
    log = api_server["log"].read_text(errors="replace")
    assert "not-a-real-token" not in log


def test_a_connection_that_is_not_allow_listed_is_refused(api_server: dict[str, Any]) -> None:
    response = httpx.get(f"{api_server['base']}/hpcai/api/cluster?conn_id=airflow_db", headers=api_server["auth"],
                         timeout=10)
    assert response.status_code == 403 and "slurm_hung" in response.json()["detail"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_chunked_200_mib_body_is_cut_off_near_the_limit(api_server: dict[str, Any]) -> None:
    """Nothing in front of the plugin buffers the body: the upload stops soon after 1 MiB."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b" " * (64 * 1024)
        yield b'{"manifest": "'
        for _ in range(200 * 16):
            sent += len(chunk)
            yield chunk

    status = None
    try:
        response = httpx.post(f"{api_server['base']}/hpcai/api/validate", content=body(), timeout=60,
                              headers={**api_server["auth"], "content-type": "application/json"})
        status = response.status_code
    except httpx.HTTPError:
        pass  # the server answered 413 and closed the connection while the upload went on
    assert status in (None, 413)
    assert sent < 32 * 1024 * 1024, f"the client could send {sent >> 20} MiB: something read the body whole"
