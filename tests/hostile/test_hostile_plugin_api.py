"""Hostile input to every plugin API route, with real Airflow JWTs (SimpleAuthManager).

Whatever the path, query or body holds, an authorised caller gets a 2xx or a 4xx with a
readable ``detail`` (never a 500), no sentinel appears, and the template repository and the
instance records on disk are unchanged after a refusal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.hostile.payloads import HOSTILE, assert_no_sentinel, hostile_names, hostile_text

os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "hpcai-hostile-tests-" + "h" * 64)
ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A TestClient on the plugin app mounted under /hpcai, an admin token and the repository."""
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
    root = tmp_path_factory.mktemp("plugin") / "repo"
    repo = TemplateRepository(root, TemplateSettings(root=root))
    repo.publish(ROOT / "airflow_provider_hpcai/templates/builtin" / "hello-local", publisher="seed")
    repo.instantiate("hello-local", None, {"greeting": "hi"}, "seed")
    manager = create_auth_manager()
    tokens = {role: manager.generate_jwt(SimpleAuthManagerUser(username=f"{role}-user", role=role))
              for role in ("viewer", "admin")}
    parent = FastAPI()
    parent.mount("/hpcai", create_app(
        repository=lambda: repo,
        cluster_status=lambda conn_id: {"transport": "fake", "nodes": [], "partitions": [], "jobs": []},
        advisor=lambda key, requested: {"resources": dict(requested)},
        usage_history=lambda limit: [],
    ))
    client = TestClient(parent, raise_server_exceptions=False)
    yield {"client": client, "repo": repo, "admin": {"Authorization": f"Bearer {tokens['admin']}"},
           "viewer": {"Authorization": f"Bearer {tokens['viewer']}"}}
    mp.undo()


def _answer_is_clear(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        detail = response.json().get("detail")
        assert detail, response.text


def _url(path: str, **query: str) -> str:
    """``path?query`` with every value sent as its bytes (lone surrogates as the bytes they stand for)."""
    return path + "?" + urlencode({k: v.encode("utf-8", "surrogateescape") for k, v in query.items()})


def _json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


@HOSTILE
@given(name=hostile_names(), version=hostile_names(), instance_id=hostile_names())
def test_hostile_path_and_query_values_get_clear_4xx_and_change_nothing(api: Any, name: str, version: str,
                                                                          instance_id: str) -> None:
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    n, v, i = (quote(x.encode("utf-8", "surrogateescape"), safe="") for x in (name, version, instance_id))
    json_headers = {**admin, "content-type": "application/json"}
    requests = [
        ("GET", _url(f"/hpcai/api/templates/{n}", version=version), {}),
        ("GET", f"/hpcai/api/templates/{n}/versions", {}),
        ("GET", _url("/hpcai/api/templates", q=name, domain=version, tag=instance_id), {}),
        ("GET", _url("/hpcai/api/instances", template=name), {}),
        ("GET", _url("/hpcai/api/cluster", conn_id=name), {}),
        ("GET", _url("/hpcai/api/usage", limit=version), {}),
        ("GET", f"/hpcai/static/{n}", {}),
        ("POST", f"/hpcai/api/templates/{n}/instantiate", {"content": _json_body({"params": {"greeting": "x"}})}),
        ("POST", f"/hpcai/api/templates/{n}/{v}/deprecate", {"content": _json_body({"reason": instance_id})}),
        ("DELETE", f"/hpcai/api/instances/{i}", {}),
    ]
    for method, path, kwargs in requests:
        response = client.request(method, path, headers=json_headers, **kwargs)
        _answer_is_clear(response)
    assert_no_sentinel()
    after = _tree(repo.root)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # only a valid deprecation of the one real template, or a new instance of it, may change anything
    assert all(k.startswith(("instances/", "templates/hello-local/deprecated.json")) for k in changed), changed
    for key in list(changed):
        if key.startswith("instances/") and key not in before:
            (repo.root / key).unlink()  # keep the next example's starting point the same


@HOSTILE
@given(value=st.one_of(hostile_text(), st.integers(), st.lists(hostile_names(), max_size=2),
                       st.dictionaries(hostile_names(), hostile_names(), max_size=2)),
       where=st.sampled_from(["params.greeting", "params.repeats", "params.extra", "resources.partition",
                              "resources.memory", "resources.extra", "version", "top"]))
def test_hostile_instantiate_bodies_are_refused_without_a_trace(api: Any, value: Any, where: str) -> None:
    client, repo, admin = api["client"], api["repo"], api["admin"]
    body: dict[str, Any] = {"params": {"greeting": "hello"}}
    section, _, key = where.partition(".")
    if section == "top":
        body["unexpected"] = value
    elif section == "version":
        body["version"] = value
    else:
        body.setdefault(section, {})[key] = value
    before = _tree(repo.root)
    response = client.post("/hpcai/api/templates/hello-local/instantiate", content=_json_body(body),
                           headers={**admin, "content-type": "application/json"})
    _answer_is_clear(response)
    assert_no_sentinel()
    if response.status_code >= 400:
        assert _tree(repo.root) == before
        return
    record = response.json()
    assert record["params"]["greeting"] == body["params"]["greeting"]
    (repo.root / "instances" / f"{record['id']}.json").unlink()


@HOSTILE
@given(manifest=st.one_of(hostile_text(), st.builds(lambda v: (ROOT / "airflow_provider_hpcai/templates/builtin" / "hello-local" / "template.yaml")
                                                    .read_text().replace("name: hello-local", "name: " + v),
                                                    hostile_names())))
def test_hostile_manifests_are_refused_by_publish_and_validate(api: Any, manifest: str) -> None:
    assume(manifest == manifest.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))  # see the xfail below
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    headers = {**admin, "content-type": "application/json"}
    for path in ("/hpcai/api/validate", "/hpcai/api/templates"):
        response = client.post(path, content=_json_body({"manifest": manifest}), headers=headers)
        _answer_is_clear(response)
        if path.endswith("templates") and response.status_code < 300:
            pytest.fail(f"a hostile manifest was published: {manifest[:200]!r}")
    assert_no_sentinel()
    assert _tree(repo.root) == before


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b"[]", b'"text"', b"null", b'{"params": "x"}',
                                 b'{"params": {"greeting": 1e999}}', b"{" * 5000 + b"}" * 5000,
                                 b'{"params": {"greeting": "' + b"x" * (1024 * 1024) + b'"}}'])
def test_malformed_bodies_get_4xx_on_every_write_route(api: Any, raw: bytes) -> None:
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    headers = {**admin, "content-type": "application/json"}
    for path in ("/hpcai/api/templates/hello-local/instantiate", "/hpcai/api/templates",
                 "/hpcai/api/templates/hello-local/1.0.0/deprecate", "/hpcai/api/validate", "/hpcai/api/advice"):
        response = client.post(path, content=raw, headers=headers)
        _answer_is_clear(response)
        assert 400 <= response.status_code < 500, (path, response.status_code)
    assert _tree(repo.root) == before


def test_writes_without_a_json_content_type_are_refused(api: Any) -> None:
    """A cross-site HTML form (text/plain or form encoding) cannot publish or instantiate."""
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/hpcai/api/templates/hello-local/instantiate", content=b'{"params": {}}',
                               headers={**admin, "content-type": content_type})
        assert response.status_code == 415
    assert _tree(repo.root) == before


def test_a_viewer_cannot_write_whatever_the_body(api: Any) -> None:
    client, repo, viewer = api["client"], api["repo"], api["viewer"]
    before = _tree(repo.root)
    headers = {**viewer, "content-type": "application/json"}
    manifest = (ROOT / "airflow_provider_hpcai/templates/builtin" / "hello-local" / "template.yaml").read_text().replace("1.0.0", "9.9.9")
    assert client.post("/hpcai/api/templates", content=_json_body({"manifest": manifest}),
                       headers=headers).status_code == 403
    assert client.post("/hpcai/api/templates/hello-local/instantiate", content=_json_body({"params": {}}),
                       headers=headers).status_code == 403
    assert client.post("/hpcai/api/templates/hello-local/1.0.0/deprecate", content=b"{}",
                       headers=headers).status_code == 403
    assert _tree(repo.root) == before


def test_instantiate_refuses_a_partition_with_a_trailing_newline(api: Any) -> None:
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    response = client.post("/hpcai/api/templates/hello-local/instantiate",
                           content=_json_body({"params": {"greeting": "x"}, "resources": {"partition": "debug\n"}}),
                           headers={**admin, "content-type": "application/json"})
    after = _tree(repo.root)
    for key in set(after) - set(before):
        (repo.root / key).unlink()
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/hpcai/api/validate", "/hpcai/api/templates"])
def test_a_lone_surrogate_escape_in_a_manifest_is_a_4xx(api: Any, path: str) -> None:
    client, repo, admin = api["client"], api["repo"], api["admin"]
    before = _tree(repo.root)
    response = client.post(path, content=b'{"manifest": "name: x\\udcff"}',
                           headers={**admin, "content-type": "application/json"})
    assert _tree(repo.root) == before
    assert 400 <= response.status_code < 500, response.status_code
