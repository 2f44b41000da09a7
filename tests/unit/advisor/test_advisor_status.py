"""A fresh install has no champion: said once per process at info level, explained by ``hpcai advisor status``."""

from __future__ import annotations

import logging
import os

import pytest

import airflow_provider_hpcai.advisor.cache as cache_module
from airflow_provider_hpcai.advisor.cache import ChampionCache, write_champion
from airflow_provider_hpcai.advisor.cli import main, status_lines
from airflow_provider_hpcai.advisor.models import TargetSpec
from airflow_provider_hpcai.advisor.online import train_compact

from .conftest import synthetic_records


@pytest.fixture()
def fresh_process(monkeypatch):
    monkeypatch.setattr(cache_module, "_said_missing", False)


def test_missing_champion_is_one_info_line_per_process(tmp_path, caplog, fresh_process):
    caplog.set_level(logging.DEBUG, logger=cache_module.__name__)
    for home in ("a", "b"):  # several homes, many checks: still one line in this process
        cache = ChampionCache(str(tmp_path / home), check_every=0.0)
        for _ in range(3):
            assert cache.get() is None
    said = [r for r in caplog.records if "no advisor champion" in r.message.lower()]
    assert len(said) == 1
    assert said[0].levelno == logging.INFO
    assert "hpcai advisor status" in said[0].message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_status_of_a_fresh_install_says_what_to_do_and_creates_nothing(tmp_path):
    home = str(tmp_path / "advisor")
    lines = status_lines(home, "advise")
    text = "\n".join(lines)
    assert f"advisor home: {home}" in text
    assert "champion: none yet" in text
    assert "hpcai advisor train" in text
    assert not os.path.exists(home)


def _status(home, capsys) -> str:
    """``hpcai advisor status --home HOME`` with the settings read afresh from the environment; its output."""
    from airflow_provider_hpcai.policy.settings import reset_settings

    reset_settings()
    try:
        assert main(["advisor", "status", "--home", str(home)]) == 0
    finally:
        reset_settings()
    return capsys.readouterr().out


def test_status_names_the_champion_once_there_is_one(tmp_path, capsys, monkeypatch):
    model, _ = train_compact(synthetic_records(), (TargetSpec(name="runtime"),))
    write_champion(str(tmp_path), model)
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "enforce")
    out = _status(tmp_path, capsys)
    assert "advisor mode: enforce" in out
    assert f"champion: {model.version}" in out


@pytest.mark.parametrize(("env", "said"), [
    ({"ADVISOR_MODE": "enforce"}, "--time-min: not set, without [hpcai] advisor_time_min_soft = True"),
    ({"ADVISOR_MODE": "enforce", "ADVISOR_TIME_MIN_SOFT": "True"}, "--time-min: the q0.3 run-time estimate of every job"),
    ({"ADVISOR_MODE": "enforce", "ADVISOR_TIME_MIN_SOFT": "True", "ADVISOR_ENFORCE_TIME_MIN": "False"},
     "--time-min: not set ([hpcai] advisor_enforce_time_min = False)"),
    ({"ADVISOR_MODE": "estimate"}, "--time-min: recorded, not set"),
    ({"ADVISOR_MODE": "estimate", "ADVISOR_TIME_MIN_SOFT": "True"}, "--time-min: the mean of each series' last two"),
])
def test_status_says_what_time_min_the_mode_sets(tmp_path, capsys, monkeypatch, env, said):
    for key in ("ADVISOR_TIME_MIN_SOFT", "ADVISOR_ENFORCE_TIME_MIN"):
        monkeypatch.delenv(f"AIRFLOW__HPCAI__{key}", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(f"AIRFLOW__HPCAI__{key}", value)
    out = _status(tmp_path, capsys)
    assert said in out and out.count("--time-min:") == 1
