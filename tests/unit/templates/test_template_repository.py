from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.errors import (
    InstanceNotFoundError,
    TemplateConflictError,
    TemplateError,
    TemplateNotFoundError,
    TemplateValidationError,
)

BUILTIN = Path(__file__).resolve().parents[3] / "airflow_provider_hpcai/templates/builtin"


def test_publish_records_the_sha256_and_reads_back(repo, minimal):
    text = minimal()
    published = repo.publish(text, publisher="alice")
    assert published.checksum == hashlib.sha256(text.encode()).hexdigest()
    stored = repo.root / "templates" / "mini" / "1.0.0"
    assert (stored / "template.yaml").read_text() == text
    assert json.loads((stored / "published.json").read_text())["sha256"] == published.checksum
    got = repo.get("mini")
    assert (got.manifest.version, got.publisher, got.deprecated) == ("1.0.0", "alice", False)


def test_publish_a_template_folder(repo):
    published = repo.publish(BUILTIN / "hello-local")
    assert published.manifest.name == "hello-local"
    assert repo.versions("hello-local")[0]["checksum"] == published.checksum


def test_versions_are_immutable(repo, minimal, tree):
    first = repo.publish(minimal())
    again = repo.publish(minimal())  # byte-identical: fine, nothing changes
    assert again.checksum == first.checksum
    before = tree(repo.root)
    with pytest.raises(TemplateConflictError, match="immutable"):
        repo.publish(minimal(title="Changed"))
    assert tree(repo.root) == before
    assert repo.get("mini").manifest.title == "Mini"


def test_latest_skips_deprecated_and_prereleases(repo, minimal):
    for version in ("1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"):
        repo.publish(minimal(version=version))
    assert repo.get("mini").manifest.version == "1.10.0"
    repo.deprecate("mini", "1.10.0", reason="wrong defaults", by="admin")
    assert repo.get("mini").manifest.version == "1.2.0"
    old = repo.get("mini", "1.10.0")
    assert old.deprecated and old.deprecation["reason"] == "wrong defaults"
    assert [v["version"] for v in repo.versions("mini")] == ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]
    for version in ("1.0.0", "1.2.0"):
        repo.deprecate("mini", version)
    assert repo.get("mini").manifest.version == "2.0.0-rc.1"  # only a pre-release is left
    repo.deprecate("mini", "2.0.0-rc.1")
    with pytest.raises(TemplateNotFoundError, match="every version"):
        repo.get("mini")
    assert repo.list_templates() == []
    assert [t["name"] for t in repo.list_templates(include_deprecated=True)] == ["mini"]


def test_unknown_template_and_version(repo, minimal):
    with pytest.raises(TemplateNotFoundError):
        repo.get("nothing")
    repo.publish(minimal())
    with pytest.raises(TemplateNotFoundError, match="not published"):
        repo.get("mini", "9.9.9")
    with pytest.raises(TemplateNotFoundError):
        repo.deprecate("mini", "9.9.9")


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc"])
def test_path_like_names_never_reach_the_disk(repo, name):
    with pytest.raises(TemplateValidationError):
        repo.get(name)
    with pytest.raises(TemplateValidationError):
        repo.get("mini", f"1.0.0/{name}")


def test_hand_edited_files_are_detected(repo, minimal):
    repo.publish(minimal())
    path = repo.root / "templates" / "mini" / "1.0.0" / "template.yaml"
    path.write_text(path.read_text().replace("Mini", "Evil"))
    with pytest.raises(TemplateError, match="checksum"):
        repo.get("mini")


def test_search_by_text_domain_and_tag(repo):
    for folder in ("hello-local", "param-sweep"):
        repo.publish(BUILTIN / folder)
    assert [t["name"] for t in repo.search("SWEEP")] == ["param-sweep"]
    assert [t["name"] for t in repo.search(tag="quickstart")] == ["hello-local"]
    assert len(repo.search(domain="demo")) == 2
    assert repo.search("no such words") == []
    assert repo.search(domain="cfd") == []


def test_instantiate_records_validated_params(repo, minimal):
    repo.publish(minimal())
    record = repo.instantiate("mini", None, {"word": "hi"}, "alice", resources={"memory": "1G"})
    assert record["params"] == {"word": "hi", "count": 1}
    assert record["template"] == "mini" and record["version"] == "1.0.0" and record["owner"] == "alice"
    assert record["checksum"] == repo.get("mini").checksum
    assert record["dag_id"].startswith("tpl_mini_") and record["created"]
    assert repo.list_instances() == [record]
    assert repo.get_instance(record["id"]) == record


def test_bad_params_leave_no_instance(repo, minimal, tree):
    repo.publish(minimal())
    before = tree(repo.root)
    with pytest.raises(TemplateValidationError) as info:
        repo.instantiate("mini", None, {"word": "hi", "count": 99}, "alice")
    assert info.value.errors[0]["path"] == "count"
    with pytest.raises(TemplateValidationError, match="resources"):
        repo.instantiate("mini", None, {"word": "hi"}, "alice", resources={"memory": "lots"})
    with pytest.raises(TemplateValidationError, match="owner"):
        repo.instantiate("mini", None, {"word": "hi"}, "bad\nowner")
    assert tree(repo.root) == before


def test_dag_ids_are_unique(repo, minimal):
    repo.publish(minimal())
    repo.instantiate("mini", None, {"word": "a"}, "u", dag_id="my_dag")
    with pytest.raises(TemplateConflictError, match="my_dag"):
        repo.instantiate("mini", None, {"word": "b"}, "u", dag_id="my_dag")
    with pytest.raises(TemplateValidationError):
        repo.instantiate("mini", None, {"word": "b"}, "u", dag_id="../x")


def test_delete_instance(repo, minimal):
    repo.publish(minimal())
    record = repo.instantiate("mini", None, {"word": "a"}, "u")
    assert repo.delete_instance(record["id"]) == record
    assert repo.list_instances() == []
    with pytest.raises(InstanceNotFoundError):
        repo.delete_instance(record["id"])
    with pytest.raises(TemplateValidationError):
        repo.delete_instance("../../templates/mini")


def test_settings_come_from_env_and_airflow_config(tmp_path, monkeypatch):
    from airflow_provider_hpcai.templates.settings import load_settings

    monkeypatch.delenv("HPCAI_TEMPLATES_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW__HPCAI__TEMPLATES_DIR", str(tmp_path / "from-cfg"))
    monkeypatch.setenv("AIRFLOW__HPCAI__TEMPLATE_FACTORY_ALLOWLIST", "my_pkg., other.")
    settings = load_settings()
    assert settings.root == tmp_path / "from-cfg"
    assert settings.factory_allowlist == ("my_pkg.", "other.")
    monkeypatch.setenv("HPCAI_TEMPLATES_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("HPCAI_TEMPLATES_BACKEND", "git")
    settings = load_settings()
    assert settings.root == tmp_path / "from-env" and settings.backend == "git"
