"""The api-server answers its health check within 1 s while any plugin request is in flight (issue 20).

The plugin app is served by uvicorn in a process of its own (as ``airflow api-server`` serves
it), mounted under ``/hpcai`` next to a health route shaped like Airflow's
``/api/v2/monitor/health`` (a plain ``def`` route, so it runs in the same shared thread pool as
Airflow's own routes and would starve with it); see ``liveness_server.py``. Each of the worst requests found in the review is started and kept in flight
while the health check is timed, then all of them at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "hpcai-hostile-tests-" + "h" * 64)
ROOT = Path(__file__).resolve().parents[2]
HEALTH_LIMIT_S = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The plugin under uvicorn in its own process (tests/hostile/liveness_server.py); its URL and auth."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin-user", role="admin"))
    port = _free_port()
    repo_dir = tmp_path_factory.mktemp("liveness") / "repo"
    log = (repo_dir.parent / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "tests.hostile.liveness_server", str(port), str(repo_dir)],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"the plugin server did not start: {(repo_dir.parent / 'server.log').read_text()[-3000:]}")
    yield {"url": url, "auth": {"Authorization": f"Bearer {token}"}}
    process.kill()
    process.wait(15)
    log.close()


#: Bodies built once, so that building them does not compete with the server while it is timed.
_MEMORY_BODY = json.dumps({"template": "hello-local", "params": {"greeting": "x"},
                           "resources": {"memory": "1" + " " * 900_000 + "x"}}).encode()
_DEEP_BODY = b"[" * (1024 * 1024 - 16)
_MANIFEST_BODY = json.dumps({"manifest": "name: big\nversion: 1.0.0\ntitle: t\nparameters: {type: object}\n"
                                         "description: " + "x" * (1024 * 1024 - 200)}).encode()
_JSON = {"content-type": "application/json"}
#: The most a composed workflow may hold: 200 simulation stages, 800 edges, kernel parameters each.
_COMPOSED_BODY = json.dumps({"document": {
    "template": {"name": "big", "version": "1.0.0", "title": "t", "parameters": {"type": "object"}},
    "nodes": [{"id": f"s{i}", "kind": "simulation", "args": {"kernel": "seismic", "backend": "local",
                                                             "kernel_params": {"nx": 64, "nz": 48, "steps": 20}}}
              for i in range(200)],
    "edges": [{"source": f"s{i % 200}", "target": f"s{(i * 7 + 1) % 200}"} for i in range(800)],
}}).encode()


def _hung_cluster(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    client.get(f"{url}/hpcai/api/cluster?conn_id=slurm_hung", headers=auth)


def _backtracking_memory(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    client.post(f"{url}/hpcai/api/advice", content=_MEMORY_BODY, headers={**auth, **_JSON})


def _chunked_200_mib(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    def trickle() -> Iterator[bytes]:
        yield b'{"manifest": "'
        chunk = b" " * (64 * 1024)
        for _ in range(200 * 16):
            yield chunk
            time.sleep(0.001)

    try:
        client.post(f"{url}/hpcai/api/validate", content=trickle(), headers={**auth, **_JSON})
    except httpx.HTTPError:
        pass  # the server answered 413 and closed the connection while the client was still sending


def _deep_json(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    client.post(f"{url}/hpcai/api/validate", content=_DEEP_BODY, headers={**auth, **_JSON})


def _largest_manifest(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    client.post(f"{url}/hpcai/api/validate", content=_MANIFEST_BODY, headers={**auth, **_JSON})


def _largest_composition(client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    client.post(f"{url}/hpcai/api/compose/validate", content=_COMPOSED_BODY, headers={**auth, **_JSON})


def _many(count: int, request: Callable[..., None], client: httpx.Client, url: str, auth: dict[str, str]) -> None:
    threads = [threading.Thread(target=request, args=(client, url, auth), daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


WORST: dict[str, Callable[[httpx.Client, str, dict[str, str]], None]] = {
    "50 requests to a hung Slurm host": lambda client, url, auth: _many(50, _hung_cluster, client, url, auth),
    "a memory string built to backtrack": _backtracking_memory,
    "a chunked 200 MiB body": _chunked_200_mib,
    "1 MiB of nested brackets": _deep_json,
    "a 1 MiB manifest": _largest_manifest,
    "4 of the largest composed workflows": lambda client, url, auth: _many(4, _largest_composition, client, url, auth),
}


def _attack_client() -> httpx.Client:
    return httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))


def _health_times(health: httpx.Client, url: str, checks: int = 5) -> list[float]:
    times = []
    for _ in range(checks):
        start = time.perf_counter()
        response = health.get(f"{url}/api/v2/monitor/health")
        times.append(time.perf_counter() - start)
        assert response.status_code == 200
        time.sleep(0.05)
    return times


@pytest.mark.parametrize("attack", sorted(WORST))
def test_health_answers_within_a_second_while_a_worst_request_is_in_flight(server: dict[str, Any],
                                                                            attack: str) -> None:
    with _attack_client() as client, httpx.Client(timeout=10) as health:
        thread = threading.Thread(target=WORST[attack], args=(client, server["url"], server["auth"]), daemon=True)
        thread.start()
        time.sleep(0.2)  # let it reach the server
        times = _health_times(health, server["url"])
        thread.join(60)
    assert max(times) < HEALTH_LIMIT_S, f"health check took {max(times):.2f}s while {attack} was in flight"


def test_health_answers_within_a_second_while_all_of_them_are_in_flight(server: dict[str, Any]) -> None:
    with _attack_client() as client, httpx.Client(timeout=10) as health:
        threads = [threading.Thread(target=attack, args=(client, server["url"], server["auth"]), daemon=True)
                   for attack in WORST.values()]
        for t in threads:
            t.start()
        time.sleep(0.3)
        times = _health_times(health, server["url"], checks=10)
        for t in threads:
            t.join(60)
    assert max(times) < HEALTH_LIMIT_S, f"health check took {max(times):.2f}s with every worst request in flight"
