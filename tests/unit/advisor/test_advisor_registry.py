from __future__ import annotations

import json
import os
import pathlib

import pytest

from airflow_provider_hpcai.advisor.cache import ChampionCache, clear_caches, get_champion, write_champion
from airflow_provider_hpcai.advisor.models import CompactModel, TargetSpec
from airflow_provider_hpcai.advisor.online import train_compact
from airflow_provider_hpcai.advisor.registry import score_of, tracking_uri_for

from .conftest import synthetic_records


@pytest.fixture(scope="module")
def model() -> CompactModel:
    return train_compact(synthetic_records(), (TargetSpec(name="runtime"),))[0]


def _metrics(kill: float, cut: float) -> dict:
    return {"policies": {"advisor": {"kill_rate": kill, "waste_cut": cut}},
            "model": {"calibrated": True, "exceedance": kill, "target_rate": 0.07}}


def test_score_prefers_waste_cut_within_the_kill_bar():
    assert score_of({"advisor.kill_rate": 0.03, "advisor.waste_cut": 0.3}) == 0.3
    assert score_of({"advisor.kill_rate": 0.2, "advisor.waste_cut": 0.9}) < 0
    assert tracking_uri_for("/x/y") == "sqlite:////x/y/mlflow.db"
    assert tracking_uri_for("/x", "http://mlflow:5000") == "http://mlflow:5000"


@pytest.mark.slow
def test_registration_promotes_only_on_improvement(tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    from mlflow import MlflowClient

    from airflow_provider_hpcai.advisor.registry import register_model

    home = str(tmp_path / "home")
    first = register_model(model, _metrics(0.03, 0.20), home=home, params={"quantile": 0.93})
    assert first.promoted and first.version == "1" and first.previous_champion is None
    exported = json.loads(pathlib.Path(first.champion_path).read_text())
    assert exported["version"] == "hpcai-advisor/1"

    worse = register_model(model, _metrics(0.03, 0.10), home=home)
    assert not worse.promoted and worse.previous_champion == "1"
    killing = register_model(model, _metrics(0.30, 0.90), home=home)
    assert not killing.promoted
    better = register_model(model, _metrics(0.02, 0.35), home=home)
    assert better.promoted and better.version == "4" and better.previous_score == pytest.approx(0.20)

    client = MlflowClient(tracking_uri=tracking_uri_for(home))
    assert str(client.get_model_version_by_alias("hpcai-advisor", "champion").version) == "4"
    run = client.get_run(better.run_id)
    assert run.data.metrics["advisor.waste_cut"] == pytest.approx(0.35)
    artifacts = {a.path for a in client.list_artifacts(better.run_id, "plots")}
    assert artifacts == {"plots/kills_vs_waste.png", "plots/calibration.png"}
    assert os.path.exists(os.path.join(home, "mlflow.db")) and os.path.isdir(os.path.join(home, "mlartifacts"))
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    clear_caches()
    assert get_champion(home).version == "hpcai-advisor/4"

    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri_for(home))
    loaded = mlflow.pyfunc.load_model("models:/hpcai-advisor@champion")
    out = loaded.predict([{"key": {"dag_id": "sim", "task_id": "heat", "nx": 512},
                           "requested": {"ntasks": 4, "time_limit": 7200}}])
    assert 0 < out[0]["time_limit"] < 7200


def test_cache_missing_then_written_then_corrupt(tmp_path, model, caplog, monkeypatch):
    import airflow_provider_hpcai.advisor.cache as cache_module

    monkeypatch.setattr(cache_module, "_said_missing", False)
    caplog.set_level("INFO", logger=cache_module.__name__)
    home = str(tmp_path)
    cache = ChampionCache(home, check_every=0.0)
    assert cache.get() is None
    assert cache.get() is None
    assert sum("no advisor champion" in r.message.lower() for r in caplog.records) == 1  # logged once
    write_champion(home, model)
    assert cache.get().version == "local"
    with open(os.path.join(home, "champion.json"), "w") as handle:
        handle.write("{ not json")
    assert cache.get() is None
    assert cache.get() is None
    assert sum("unreadable" in r.message for r in caplog.records) == 1


def test_cache_rereads_only_after_the_check_interval(tmp_path, model):
    home = str(tmp_path)
    write_champion(home, model)
    cache = ChampionCache(home, check_every=3600.0)
    first = cache.get()
    os.remove(os.path.join(home, "champion.json"))
    assert cache.get() is first  # no stat on the call path until the interval passes
    cache.refresh()
    assert cache.get() is first or cache._model is None
    assert cache._model is None
