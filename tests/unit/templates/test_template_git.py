from __future__ import annotations

import shutil
import subprocess

import pytest

from airflow_provider_hpcai.templates.configured import open_repository
from airflow_provider_hpcai.templates.git_backend import GitTemplateRepository, git_argv
from airflow_provider_hpcai.templates.settings import TemplateSettings

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_each_publish_and_deprecation_is_a_commit(tmp_path, minimal):
    repo = open_repository(TemplateSettings(root=tmp_path / "repo", backend="git"))
    assert isinstance(repo, GitTemplateRepository)
    repo.publish(minimal())
    repo.publish(minimal())  # identical: no new commit
    repo.publish(minimal(version="1.1.0"))
    repo.deprecate("mini", "1.0.0", reason="old")
    repo.instantiate("mini", None, {"word": "x"}, "u")
    assert repo.history() == ["deprecate mini 1.0.0", "publish mini 1.1.0", "publish mini 1.0.0"]
    tracked = subprocess.run(git_argv(repo.root, "ls-files"), capture_output=True, text=True, check=True).stdout
    assert "templates/mini/1.1.0/template.yaml" in tracked
    assert "instances/" not in tracked  # runtime state stays out of history


def test_push_to_a_remote(tmp_path, minimal):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = open_repository(TemplateSettings(root=tmp_path / "repo", backend="git", git_remote=str(remote)))
    repo.publish(minimal())
    assert repo.push_error is None
    log = subprocess.run(["git", "-C", str(remote), "log", "--all", "--format=%s"], capture_output=True, text=True).stdout
    assert "publish mini 1.0.0" in log


def test_git_argv_is_a_list_without_shell():
    argv = git_argv(tmp := __import__("pathlib").Path("/r; rm -rf /"), "commit", "-m", "$(id)")
    assert argv[:3] == ["git", "-C", str(tmp)] and argv[-1] == "$(id)"
