"""Issue 20, findings 1, 3, 4, 8 and 10: what one request may make the plugin do.

Each test is what an attacker with a Viewer account did against a live api-server, and what
the user (or the operator watching the server) sees now instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "hpcai-hostile-tests-" + "h" * 64)
ROOT = Path(__file__).resolve().parents[2]
PUBLISH_ROUTES = ("/hpcai/api/templates/hello-local/instantiate", "/hpcai/api/templates",
                  "/hpcai/api/templates/hello-local/1.0.0/deprecate", "/hpcai/api/validate", "/hpcai/api/advice")


class FakeClusters:
    """Cluster sources by connection id: answering, failing with a chatty error, or never answering."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, conn_id: str | None) -> dict[str, Any]:
        from airflow_provider_hpcai.plugins.monitor import ServiceUnavailable

        with self.lock:
            self.calls[str(conn_id)] = self.calls.get(str(conn_id), 0) + 1
        if conn_id == "slurm_hung":
            self.release.wait(30)  # a host that never answers (until the test ends)
            raise ServiceUnavailable("timed out")
        if conn_id == "slurm_broken":
            raise ServiceUnavailable(
                "401 from https://head:6820: bad token EYJHBGCIOIJIUZI1NIIS.EYJZDWIIOIJHBGLJZSJ9 "
                "(ca /etc/hpcai/secret-ca.pem)")
        return {"transport": "fake", "nodes": [], "partitions": [], "jobs": []}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The plugin app (mounted under /hpcai), a TestClient, Viewer/Admin headers and the fakes."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_hpcai.plugins.app import create_app
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    mp = pytest.MonkeyPatch()
    mp.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti, session=None: False))
    root = tmp_path_factory.mktemp("limits") / "repo"
    repo = TemplateRepository(root, TemplateSettings(root=root))
    for name in ("hello-local", "param-sweep"):
        repo.publish(ROOT / "airflow_provider_hpcai" / "templates" / "builtin" / name, publisher="seed")
    clusters = FakeClusters()
    manager = create_auth_manager()
    tokens = {role: manager.generate_jwt(SimpleAuthManagerUser(username=f"{role}-user", role=role))
              for role in ("viewer", "admin")}
    app = create_app(repository=lambda: repo, cluster_status=clusters,
                     advisor=lambda key, requested: {"resources": dict(requested)}, usage_history=lambda limit: [],
                     cluster_conn_ids=["slurm_cluster", "slurm_hung", "slurm_broken"])
    parent = FastAPI()
    parent.mount("/hpcai", app)
    client = TestClient(parent, raise_server_exceptions=False)
    yield {"client": client, "app": app, "clusters": clusters, "repo": repo,
           "viewer": {"Authorization": f"Bearer {tokens['viewer']}", "content-type": "application/json"},
           "admin": {"Authorization": f"Bearer {tokens['admin']}", "content-type": "application/json"}}
    clusters.release.set()
    mp.undo()


# ----------------------------------------------------------------------------- finding 1
@pytest.mark.parametrize("path", ["/hpcai/api/validate", "/hpcai/api/advice"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_cross_site_form_cannot_reach_validate_or_advice(plugin: dict[str, Any], path: str,
                                                          content_type: str) -> None:
    """A page on another site can POST a text/plain form with the user's cookie: it must get 415."""
    body = json.dumps({"template": "hello-local", "params": {"greeting": "x"}}).encode()
    headers = {**plugin["viewer"], "content-type": content_type}
    response = plugin["client"].post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]


def test_a_memory_string_built_to_backtrack_is_refused_at_once(plugin: dict[str, Any]) -> None:
    """The request that froze the api-server for seconds (a digit, spaces, a letter) now takes no time."""
    body = {"template": "hello-local", "params": {"greeting": "x"}, "resources": {"memory": "1" + " " * 48_000 + "x"}}
    start = time.perf_counter()
    response = plugin["client"].post("/hpcai/api/advice", content=json.dumps(body), headers=plugin["viewer"])
    assert time.perf_counter() - start < 1.0
    assert response.status_code == 422 and "is not a size" in response.json()["detail"]


# ----------------------------------------------------------------------------- finding 4
def _drive(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]],
           chunks: Iterator[bytes]) -> tuple[int, int, dict[bytes, bytes]]:
    """Run one request through the ASGI app with a streamed body; return (status, bytes pulled, headers)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], pulled, dict(start.get("headers", []))


@pytest.mark.parametrize("path", ["/api/validate", "/api/advice", "/api/templates"])
def test_a_chunked_200_mib_body_is_refused_without_being_read(plugin: dict[str, Any], path: str) -> None:
    """No Content-Length: the body is counted while read and refused at the limit (413), never buffered."""
    from airflow_provider_hpcai.plugins.limits import MAX_BODY_BYTES

    chunk = b" " * (64 * 1024)
    chunks = iter([b'{"manifest": "'] + [chunk] * (200 * 16))  # 200 MiB
    token = plugin["admin"]["Authorization"].encode()
    headers = [(b"authorization", token), (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, pulled, answer_headers = _drive(plugin["app"], "POST", path, headers, chunks)
    assert status == 413 and answer_headers.get(b"connection") == b"close", "the server must not read on"
    assert pulled <= MAX_BODY_BYTES + len(chunk) + 64, f"read {pulled} bytes of a 200 MiB body before refusing it"


def test_an_announced_oversized_body_is_refused_unread(plugin: dict[str, Any]) -> None:
    chunks = iter([b"{}"] * 10)
    token = plugin["viewer"]["Authorization"].encode()
    headers = [(b"authorization", token), (b"content-type", b"application/json"), (b"content-length", b"209715200")]
    status, pulled, _ = _drive(plugin["app"], "POST", "/api/validate", headers, chunks)
    assert (status, pulled) == (413, 0)


# ----------------------------------------------------------------------------- finding 8
@pytest.mark.parametrize("body", [
    b"[" * 1000 + b"]" * 1000,
    b'{"params": {"greeting": ' + b"[" * 990 + b"]" * 990 + b"}}",
    b'{"template": "hello-local", "params": {"greeting": ' + b'{"a": ' * 400 + b"1" + b"}" * 400 + b"}}",
    b"[" * (1024 * 1024 - 16),
], ids=["array-1000", "params-990", "objects-400", "one-mib-of-brackets"])
def test_deeply_nested_json_is_a_400_on_every_route(plugin: dict[str, Any], body: bytes) -> None:
    for path in PUBLISH_ROUTES:
        response = plugin["client"].post(path, content=body, headers=plugin["admin"])
        assert response.status_code == 400, (path, response.status_code, response.text[:300])
        assert "levels deep" in response.json()["detail"] or "not valid JSON" in response.json()["detail"]


def test_ordinary_nesting_still_works(plugin: dict[str, Any]) -> None:
    body = {"template": "hello-local", "params": {"greeting": "hi"}}
    response = plugin["client"].post("/hpcai/api/validate", content=json.dumps(body), headers=plugin["viewer"])
    assert response.status_code == 200, response.text


# ----------------------------------------------------------------------------- finding 10
def test_every_answer_tells_browsers_not_to_sniff(plugin: dict[str, Any]) -> None:
    client, viewer = plugin["client"], plugin["viewer"]
    answers = {
        "page": client.get("/hpcai/templates", headers=viewer),
        "api": client.get("/hpcai/api/templates", headers=viewer),
        "static": client.get("/hpcai/static/templates.js", headers=viewer),
        "401": client.get("/hpcai/api/templates"),
        "404": client.get("/hpcai/api/templates/nothing", headers=viewer),
        "413": client.post("/hpcai/api/validate", content=b" " * (2 * 1024 * 1024), headers=viewer),
        "415": client.post("/hpcai/api/validate", content=b"{}", headers={**viewer, "content-type": "text/plain"}),
    }
    for what, response in answers.items():
        assert response.headers.get("x-content-type-options") == "nosniff", (what, response.status_code)
    assert "script-src 'self'" in answers["page"].headers["content-security-policy"]


@pytest.mark.parametrize("label", ["sweep\n", "sweep\n\n", "a\nb"])
def test_a_schema_pattern_refuses_a_trailing_newline(plugin: dict[str, Any], label: str) -> None:
    """``pattern: "^[A-Za-z0-9_-]{1,40}$"`` means the whole value, as in JSON Schema (ECMA-262)."""
    body = {"template": "param-sweep", "params": {"points": 2, "label": label}}
    response = plugin["client"].post("/hpcai/api/validate", content=json.dumps(body), headers=plugin["viewer"])
    assert response.status_code == 422, response.text
    assert any(e["path"] == "label" for e in response.json()["errors"])
    ok = plugin["client"].post("/hpcai/api/validate", content=json.dumps({**body, "params": {"label": "sweep"}}),
                               headers=plugin["viewer"])
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("field", "value", "says"), [
    ("memory", "99999999999999999999999999999T", "more than 1024T"),
    ("memory", "2000T", "more than 1024T"),
    ("time_limit", "99999999-00:00:00", "not a Slurm time"),
    ("time_limit", "400-00:00:00", "longer than 365 days"),
])
def test_resources_have_upper_bounds(plugin: dict[str, Any], field: str, value: str, says: str) -> None:
    body = {"template": "hello-local", "params": {"greeting": "x"}, "resources": {field: value}}
    response = plugin["client"].post("/hpcai/api/advice", content=json.dumps(body), headers=plugin["viewer"])
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


# ----------------------------------------------------------------------------- finding 3
@pytest.mark.parametrize("conn_id", ["postgres_default", "airflow_db", "slurm_default", "slurm_cluster2"])
def test_the_cluster_page_uses_only_allow_listed_connections(plugin: dict[str, Any], conn_id: str) -> None:
    before = dict(plugin["clusters"].calls)
    response = plugin["client"].get(f"/hpcai/api/cluster?conn_id={conn_id}", headers=plugin["viewer"])
    assert response.status_code == 403
    assert "cluster_status_conn_ids" in response.json()["detail"]
    assert plugin["clusters"].calls == before, "a refused connection must not be used"
    default = plugin["client"].get("/hpcai/api/cluster", headers=plugin["viewer"])
    assert default.status_code == 200 and plugin["clusters"].calls.get("slurm_cluster")


def test_remote_error_text_never_reaches_a_viewer(plugin: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Not the token (even upper-cased), not the CA path: a generic 503; the log has the redacted reason."""
    with caplog.at_level("WARNING", logger="airflow_provider_hpcai.plugins.monitor"):
        response = plugin["client"].get("/hpcai/api/cluster?conn_id=slurm_broken", headers=plugin["viewer"])
        again = plugin["client"].get("/hpcai/api/cluster?conn_id=slurm_broken", headers=plugin["viewer"])
    assert response.status_code == again.status_code == 503
    for leaked in ("EYJ", "eyJ", "secret-ca.pem", "/etc/hpcai", "head:6820", "401"):
        assert leaked not in response.text
    assert "did not answer" in response.json()["detail"]
    assert plugin["clusters"].calls["slurm_broken"] == 1, "a failure is remembered, not retried by every page load"
    assert "secret-ca.pem" in caplog.text and "EYJHBGCIOIJIUZI1NIIS" not in caplog.text


def test_a_host_that_never_answers_makes_nobody_wait(plugin: dict[str, Any]) -> None:
    """42 requests to a hung host once froze the api-server; now each waits at most wait_s, asking once."""
    from concurrent.futures import ThreadPoolExecutor

    client, viewer = plugin["client"], plugin["viewer"]
    wait_s = plugin["app"].state.monitor.wait_s

    def hung() -> tuple[int, float]:
        start = time.perf_counter()
        status = client.get("/hpcai/api/cluster?conn_id=slurm_hung", headers=viewer).status_code
        return status, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=42) as pool:
        futures = [pool.submit(hung) for _ in range(42)]
        time.sleep(0.3)
        start = time.perf_counter()
        other = client.get("/hpcai/api/cluster?conn_id=slurm_cluster", headers=viewer)
        listing = client.get("/hpcai/api/templates", headers=viewer)
        elapsed = time.perf_counter() - start
        results = [f.result(timeout=60) for f in futures]
    assert other.status_code == 200 and listing.status_code == 200
    assert elapsed < 1.0, f"other requests waited {elapsed:.1f}s behind a hung host"
    assert {status for status, _ in results} == {503}
    assert max(took for _, took in results) < wait_s + 3.0
    assert plugin["clusters"].calls["slurm_hung"] == 1, "one request at a time asks a connection (single flight)"


def _with_code_pattern(name: str, pattern: str) -> str:
    manifest = (ROOT / "airflow_provider_hpcai" / "templates" / "builtin" / "hello-local" / "template.yaml").read_text()
    manifest = manifest.replace("name: hello-local", f"name: {name}")
    return manifest.replace("      maxLength: 200\n", f"      maxLength: 200000\n      pattern: {json.dumps(pattern)}\n")


def test_a_publishers_backtracking_pattern_cannot_hold_the_server(plugin: dict[str, Any]) -> None:
    """``^(a+)+$`` in a parameter schema: an Op's pattern runs in linear time on every value."""
    client, admin, viewer = plugin["client"], plugin["admin"], plugin["viewer"]
    published = client.post("/hpcai/api/templates", content=json.dumps({"manifest": _with_code_pattern(
        "nested-repeat", "^(a+)+$")}), headers=admin)
    assert published.status_code == 201, published.text
    body = {"template": "nested-repeat", "params": {"greeting": "a" * 60_000 + "!"}}  # parameters: at most 64 KiB
    start = time.perf_counter()
    response = client.post("/hpcai/api/validate", content=json.dumps(body), headers=viewer)
    assert time.perf_counter() - start < 1.0
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "greeting"
    ok = client.post("/hpcai/api/validate", content=json.dumps({**body, "params": {"greeting": "aaa"}}),
                     headers=viewer)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("pattern", ["^(?=a)[a-z]+$", r"^(a)\1$"])
def test_a_pattern_the_linear_engine_cannot_run_is_refused_at_publish(plugin: dict[str, Any], pattern: str) -> None:
    response = plugin["client"].post("/hpcai/api/templates", content=json.dumps({"manifest": _with_code_pattern(
        "lookaround", pattern)}), headers=plugin["admin"])
    assert response.status_code == 422, response.text
    assert "linear-time" in response.json()["detail"] and repr(pattern) in response.json()["detail"]
