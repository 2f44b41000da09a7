"""The plugin's HTTP API: authentication, permissions, bad input, and what users see."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = (ROOT / "airflow_provider_hpcai/templates/builtin" / "hello-local" / "template.yaml").read_text()


def snapshot(repo):
    return {
        str(p.relative_to(repo.root)): p.read_bytes()
        for p in sorted(repo.root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def all_routes(client):
    from starlette.routing import Mount

    app = next(r.app for r in client.parent.routes if isinstance(r, Mount))
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ()) - {"HEAD"}):
            path = route.path.replace("{name}", "hello-local").replace("{version}", "1.0.0")
            path = path.replace("{instance_id}", "hello-local-0123abcd")
            yield method, "/hpcai" + path.replace("{name}", "style.css")


def test_routes_are_all_found(client):
    paths = {p for _, p in all_routes(client)}
    assert {"/hpcai/templates", "/hpcai/resources", "/hpcai/api/templates", "/hpcai/api/cluster",
            "/hpcai/api/advice", "/hpcai/api/validate", "/hpcai/api/instances"} <= paths


def test_every_route_needs_credentials(client, repo):
    before = snapshot(repo)
    routes = list(all_routes(client))
    assert len(routes) >= 15
    for method, path in routes:
        no_auth = client.request(method, path, content=b"{not json", headers={"content-type": "application/json"})
        assert no_auth.status_code == 401, (method, path, no_auth.text)
        garbage = client.request(method, path, json={}, headers={"Authorization": "Bearer not-a-jwt"})
        assert garbage.status_code in (401, 403), (method, path, garbage.status_code)
        cookie = client.request(method, path, json={}, cookies={"_token": "forged"})
        assert cookie.status_code in (401, 403), (method, path, cookie.status_code)
    assert snapshot(repo) == before


def test_revoked_token_is_refused(client, auth):
    import jwt

    token = auth["tokens"]["admin"]
    assert client.get("/hpcai/api/templates", headers=client.as_role("admin")).status_code == 200
    auth["revoked"].add(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert client.get("/hpcai/api/templates", headers=client.as_role("admin")).status_code in (401, 403)


def test_cookie_authenticates_the_pages(client):
    page = client.get("/hpcai/templates", cookies={"_token": client.tokens["viewer"]})
    assert page.status_code == 200
    assert 'data-base="/hpcai"' in page.text and "/hpcai/static/templates.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/hpcai/static/templates.js", cookies={"_token": client.tokens["viewer"]})
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/hpcai/resources", cookies={"_token": client.tokens["viewer"]}).status_code == 200


def test_logged_out_browser_gets_a_login_link(client):
    page = client.get("/hpcai/templates", headers={"accept": "text/html"})
    assert page.status_code == 401 and "Log in" in page.text and 'target=\'_top\'' in page.text


def test_static_files_are_confined(client):
    for name in ["..%2Fapp.py", "app.py", ".hidden.js", "nope.js"]:
        assert client.get(f"/hpcai/static/{name}", headers=client.as_role("viewer")).status_code == 404


def test_viewer_reads_but_cannot_change(client, repo):
    h = client.as_role("viewer")
    listing = client.get("/hpcai/api/templates", headers=h).json()
    assert listing["total"] == 1 and listing["templates"][0]["name"] == "hello-local"
    before = snapshot(repo)
    assert client.post("/hpcai/api/templates/hello-local/instantiate", json={"params": {}}, headers=h).status_code == 403
    assert client.post("/hpcai/api/templates", json={"manifest": MANIFEST}, headers=h).status_code == 403
    assert client.post("/hpcai/api/templates/hello-local/1.0.0/deprecate", json={}, headers=h).status_code == 403
    assert snapshot(repo) == before


def test_publish_needs_an_admin_level_role(client, repo):
    new = MANIFEST.replace("name: hello-local", "name: hello-copy")
    before = snapshot(repo)
    denied = client.post("/hpcai/api/templates", json={"manifest": new}, headers=client.as_role("user"))
    assert denied.status_code == 403 and "publish" in denied.json()["detail"]
    assert snapshot(repo) == before
    created = client.post("/hpcai/api/templates", json={"manifest": new}, headers=client.as_role("admin"))
    assert created.status_code == 201 and created.json()["publisher"] == "admin-user"
    newer = new.replace("version: 1.0.0", "version: 1.1.0")
    assert client.post("/hpcai/api/templates", json={"manifest": newer}, headers=client.as_role("admin")).status_code == 201
    assert [v["version"] for v in repo.versions("hello-copy")] == ["1.0.0", "1.1.0"]
    dep = client.post("/hpcai/api/templates/hello-copy/1.1.0/deprecate", json={"reason": "typo"}, headers=client.as_role("op"))
    assert dep.status_code == 200 and dep.json()["deprecated"] is True


def test_user_instantiates_and_finds_the_instance(client, repo):
    h = client.as_role("user")
    made = client.post(
        "/hpcai/api/templates/hello-local/instantiate", json={"params": {"greeting": "hi", "repeats": 3}}, headers=h
    )
    assert made.status_code == 201
    record = made.json()
    assert record["owner"] == "user-user" and record["params"] == {"greeting": "hi", "repeats": 3}
    assert record["dag_url"] == f"/dags/{record['dag_id']}"
    listed = client.get("/hpcai/api/instances", headers=client.as_role("viewer")).json()
    assert [i["id"] for i in listed["instances"]] == [record["id"]]
    assert client.delete(f"/hpcai/api/instances/{record['id']}", headers=client.as_role("viewer")).status_code == 403
    assert client.delete(f"/hpcai/api/instances/{record['id']}", headers={**h, "X-Requested-With": "test"}).status_code == 200
    assert repo.list_instances() == []


BAD_MANIFESTS = {
    "dotdot name": MANIFEST.replace("name: hello-local", "name: '..'"),
    "slash name": MANIFEST.replace("name: hello-local", "name: a/b"),
    "malformed yaml": "name: [unclosed\n  - :",
    "bad schema": MANIFEST.replace("maximum: 10", "maximum: ten"),
    "not semver": MANIFEST.replace("version: 1.0.0", "version: '1.0'"),
    "jinja": MANIFEST.replace('"{{ params.greeting }}"', '"{{ params.greeting | safe }}"'),
    "alias bomb": "a: &a [x, x]\nb: [*a, *a]\n",
    "changed existing version": MANIFEST.replace("Hello, local", "Changed"),
    "oversized": MANIFEST + "\n# " + "x" * (300 * 1024) + "\n",
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_refused_and_change_nothing(client, repo, case):
    before = snapshot(repo)
    response = client.post("/hpcai/api/templates", json={"manifest": BAD_MANIFESTS[case]}, headers=client.as_role("admin"))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert snapshot(repo) == before


def test_validate_reports_manifest_problems(client):
    h = client.as_role("viewer")
    ok = client.post("/hpcai/api/validate", json={"manifest": MANIFEST}, headers=h)
    assert ok.status_code == 200 and ok.json()["template"]["name"] == "hello-local"
    bad = client.post("/hpcai/api/validate", json={"manifest": BAD_MANIFESTS["bad schema"]}, headers=h)
    assert bad.status_code == 422 and "JSON Schema" in bad.json()["detail"]


def test_params_failing_the_schema(client, repo):
    before = snapshot(repo)
    h = client.as_role("user")
    body = {"params": {"greeting": "", "repeats": 50, "extra": True}}
    response = client.post("/hpcai/api/templates/hello-local/instantiate", json=body, headers=h)
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert {"greeting", "repeats"} <= paths
    checked = client.post("/hpcai/api/validate", json={"template": "hello-local", **body}, headers=h)
    assert checked.status_code == 422 and checked.json()["errors"] == response.json()["errors"]
    wrong_type = client.post("/hpcai/api/templates/hello-local/instantiate", json={"params": [1, 2]}, headers=h)
    assert wrong_type.status_code == 422
    assert snapshot(repo) == before


@pytest.mark.parametrize("path", ["/hpcai/api/templates/..", "/hpcai/api/templates/a%2Fb", "/hpcai/api/templates/..%2F..%2Fetc",
                                  "/hpcai/api/templates/hello-local?version=../../x"])
def test_path_like_names_in_urls(client, path):
    response = client.get(path, headers=client.as_role("viewer"))
    assert response.status_code in (404, 422), (path, response.status_code)


def test_forms_from_other_sites_cannot_write(client, repo):
    before = snapshot(repo)
    forged = client.post(
        "/hpcai/api/templates/hello-local/instantiate",
        content=json.dumps({"params": {}}),
        headers={**client.as_role("user"), "content-type": "text/plain"},
    )
    assert forged.status_code == 415
    assert snapshot(repo) == before


def test_huge_bodies_are_refused_unread(client):
    response = client.post(
        "/hpcai/api/validate", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={**client.as_role("viewer"), "content-type": "application/json"},
    )
    assert response.status_code == 413


def test_search_parameters(client, repo):
    repo.publish(ROOT / "airflow_provider_hpcai/templates/builtin" / "param-sweep")
    h = client.as_role("viewer")
    assert [t["name"] for t in client.get("/hpcai/api/templates?q=sweep", headers=h).json()["templates"]] == ["param-sweep"]
    assert client.get("/hpcai/api/templates?tag=quickstart", headers=h).json()["total"] == 1
    detail = client.get("/hpcai/api/templates/param-sweep", headers=h).json()
    assert detail["entrypoint"].endswith(":parameter_sweep") and detail["versions"][0]["version"] == "1.0.0"
    assert client.get("/hpcai/api/templates/nothing", headers=h).status_code == 404


def test_cluster_status_is_cached_and_plotted(client, fakes):
    h = client.as_role("viewer")
    first = client.get("/hpcai/api/cluster", headers=h).json()
    second = client.get("/hpcai/api/cluster", headers=h).json()
    assert fakes["cluster"].calls == 1, "two page loads within the TTL must ask the controller once"
    assert first["transport"] == "fake" and second["cache_age_s"] >= 0
    point = first["history"][0]
    # node n1 is listed under two partitions but counted once
    assert (point["cpus_total"], point["nodes_total"], point["jobs_running"], point["jobs_pending"]) == (16, 2, 1, 1)


def test_cluster_down_is_a_503_whose_reason_only_the_log_shows(client, fakes, caplog):
    fakes["cluster"].down = True
    with caplog.at_level("WARNING", logger="airflow_provider_hpcai.plugins.monitor"):
        response = client.get("/hpcai/api/cluster", headers=client.as_role("viewer"))
    assert response.status_code == 503 and "did not answer" in response.json()["detail"]
    assert "slurmctld" not in response.text, "remote error text must not reach a Viewer"
    assert "slurmctld is not responding" in caplog.text


def test_missing_slurm_hook_is_a_clear_503(monkeypatch):
    from airflow_provider_hpcai.plugins.monitor import ServiceUnavailable, default_cluster_status

    monkeypatch.setitem(sys.modules, "airflow_provider_hpcai.hooks.slurm", None)
    with pytest.raises(ServiceUnavailable, match="not installed"):
        default_cluster_status()


def test_advice_uses_the_advisor(client, fakes):
    response = client.post(
        "/hpcai/api/advice", json={"template": "hello-local", "params": {"greeting": "x", "repeats": 4}},
        headers=client.as_role("viewer"),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["requested"]["memory"] == 256 * 1024**2
    assert body["advice"]["resources"]["memory"] == 512 * 1024**2
    assert fakes["advisor"].keys[0]["size_params"] == {"repeats": 4}
    bad = client.post("/hpcai/api/advice", json={"template": "hello-local", "params": {"repeats": 0}}, headers=client.as_role("viewer"))
    assert bad.status_code == 422


def _advice_client(auth, repo):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_hpcai.plugins.app import create_app

    parent = FastAPI()
    parent.mount("/hpcai", create_app(repository=lambda: repo, cluster_status=lambda c: {}))
    return TestClient(parent), {"Authorization": f"Bearer {auth['tokens']['viewer']}"}


def test_advice_without_a_model_keeps_the_request(auth, repo, tmp_path, monkeypatch):
    from airflow_provider_hpcai.advisor.cache import clear_caches
    from airflow_provider_hpcai.policy.settings import reset_settings

    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path / "advisor"))
    reset_settings()
    clear_caches()
    client, h = _advice_client(auth, repo)
    response = client.post("/hpcai/api/advice", json={"template": "hello-local", "params": {}}, headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "no model" in str(body)
    reset_settings()


def test_broken_advisor_is_a_503(auth, repo, monkeypatch):
    from airflow_provider_hpcai import policy

    def broken(key, requested):
        raise RuntimeError("registry unreachable")

    monkeypatch.setattr(policy, "suggest_resources", broken)
    client, h = _advice_client(auth, repo)
    response = client.post("/hpcai/api/advice", json={"template": "hello-local", "params": {}}, headers=h)
    assert response.status_code == 503 and "advisor" in response.json()["detail"]


def test_usage_history_shows_a_viewer_only_their_own_jobs(client):
    rows = client.get("/hpcai/api/usage?limit=5", headers=client.as_role("viewer")).json()["jobs"]
    assert rows == [{"job_id": "9", "requested_seconds": 600, "elapsed_seconds": 120, "user": "viewer-user"}]
    assert client.get("/hpcai/api/usage?limit=5", headers=client.as_role("user")).json()["jobs"] == []
    everyone = client.get("/hpcai/api/usage?limit=5", headers=client.as_role("op")).json()["jobs"]
    assert [row["job_id"] for row in everyone] == ["9", "10"]
