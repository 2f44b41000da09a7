"""The loader DAG file, parsed by Airflow's own DagBag."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings

ROOT = Path(__file__).resolve().parents[3]
LOADER = ROOT / "dags" / "hpcai_template_instances.py"


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    repo_root, dags = tmp_path / "repo", tmp_path / "dags"
    dags.mkdir()
    shutil.copy(LOADER, dags / LOADER.name)
    monkeypatch.setenv("HPCAI_TEMPLATES_DIR", str(repo_root))
    repo = TemplateRepository(repo_root, TemplateSettings(root=repo_root))
    for folder in ("hello-local", "param-sweep"):
        repo.publish(ROOT / "airflow_provider_hpcai/templates/builtin" / folder)
    return repo, dags


def _bag(dags: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dags), bundle_path=dags)


def test_one_real_dag_per_instance(setup):
    repo, dags = setup
    a = repo.instantiate("hello-local", None, {"greeting": "hi"}, "alice")
    b = repo.instantiate("param-sweep", None, {"points": 2}, "bob")
    bag = _bag(dags)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {a["dag_id"], b["dag_id"]}
    hello = bag.dags[a["dag_id"]]
    assert [t.task_id for t in hello.topological_sort()] == ["greet", "machine", "done"]
    assert hello.fileloc.endswith("hpcai_template_instances.py")
    assert len(bag.dags[b["dag_id"]].tasks) == 3


def test_new_instances_appear_and_deleted_ones_disappear(setup):
    repo, dags = setup
    assert _bag(dags).dag_ids == []
    record = repo.instantiate("hello-local", None, {"greeting": "hi"}, "alice")
    assert _bag(dags).dag_ids == [record["dag_id"]]
    repo.delete_instance(record["id"])
    assert _bag(dags).dag_ids == []


def test_a_bad_instance_is_skipped_not_fatal(setup, caplog):
    repo, dags = setup
    good = repo.instantiate("hello-local", None, {"greeting": "hi"}, "alice")
    bad_params = repo.instantiate("hello-local", None, {"greeting": "hi"}, "alice")
    path = repo.instances_dir / f"{bad_params['id']}.json"
    path.write_text(json.dumps({**bad_params, "params": {"greeting": "hi", "repeats": 999}}))
    (repo.instances_dir / "missing-0000000a.json").write_text(
        json.dumps({**good, "id": "missing-0000000a", "template": "gone", "dag_id": "tpl_gone"})
    )
    (repo.instances_dir / "junk-0000000b.json").write_text("{not json")
    bag = _bag(dags)
    assert bag.import_errors == {}
    assert bag.dag_ids == [good["dag_id"]]
    assert "skipping instance" in caplog.text and bad_params["id"] in caplog.text


def test_loader_parses_fast(setup):
    repo, dags = setup
    for i in range(30):
        repo.instantiate("hello-local", None, {"greeting": f"hi {i}"}, "alice")
    from airflow_provider_hpcai.templates.loader import load_instance_dags

    load_instance_dags(repo)  # warm imports, as the dag processor has them
    start = time.perf_counter()
    dags = load_instance_dags(repo)
    elapsed = time.perf_counter() - start
    assert len(dags) == 30
    assert elapsed < 2.0, f"30 instances took {elapsed:.2f} s"
