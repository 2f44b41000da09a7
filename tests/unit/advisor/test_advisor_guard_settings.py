"""The guard's [hpcai] keys (advisor/settings.py): a site states its kill budget and tunes the guard."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.guard import GuardSpec
from airflow_provider_hpcai.advisor.settings import GUARD_KEYS, read_settings, reset_settings
from airflow_provider_hpcai.config import CONFIG_OPTIONS
from airflow_provider_hpcai.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    for key in GUARD_KEYS:
        monkeypatch.delenv(f"AIRFLOW__HPCAI__{key.upper()}", raising=False)
    reset_settings()
    live_guard.clear_views()
    yield
    reset_settings()
    live_guard.clear_views()


def test_unset_keys_give_the_shipped_guard_and_the_declared_defaults_are_its_own():
    assert read_settings().require_guard() == GuardSpec()
    shipped = GuardSpec()
    for key, spec in GUARD_KEYS.items():  # provider info and docs declare what GuardSpec ships
        assert CONFIG_OPTIONS[key]["default"] == str(getattr(shipped, spec.field)), key


def test_the_site_states_its_budget_and_tunes_the_guard_through_env_vars(monkeypatch):
    for key, value in {"ADVISOR_KILL_BUDGET": "0.02", "ADVISOR_GUARD_AIM": " 0.015 ", "ADVISOR_GUARD_MAX_IN_FLIGHT": "2",
                       "ADVISOR_GUARD_PROBATION": "0", "ADVISOR_GUARD_BRAKE": "0.5",
                       "ADVISOR_GUARD_BRAKE_WINDOW": "200", "ADVISOR_GUARD_ABSTAIN_RATIO": "1"}.items():
        monkeypatch.setenv(f"AIRFLOW__HPCAI__{key}", value)
    guard = read_settings().require_guard()
    assert guard == dataclasses.replace(GuardSpec(), kill_budget=0.02, aim=0.015, max_in_flight=2, probation_clear=0,
                                        brake=0.5, brake_window=200, abstain_ratio=1.0)
    assert read_settings().guard_error is None


def test_settings_are_cached_until_reset(monkeypatch):
    assert read_settings().require_guard().kill_budget == 0.05
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_KILL_BUDGET", "0.01")
    assert read_settings().require_guard().kill_budget == 0.05
    reset_settings()
    assert read_settings().require_guard().kill_budget == 0.01


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("ADVISOR_KILL_BUDGET", "5", "between 0 and 1"),  # 5 meaning 5 %
    ("ADVISOR_KILL_BUDGET", "five percent", "between 0 and 1"),
    ("ADVISOR_KILL_BUDGET", "nan", "between 0 and 1"),
    ("ADVISOR_GUARD_MAX_IN_FLIGHT", "2.5", "whole number"),
    ("ADVISOR_GUARD_PROBATION", "-1", "0 or more"),
    ("ADVISOR_GUARD_BRAKE", "1.5", "from 0 to 1"),
    ("ADVISOR_GUARD_BRAKE_WINDOW", "0", "1 or more"),
    ("ADVISOR_GUARD_ABSTAIN_RATIO", "0", "at most 1"),
])
def test_a_bad_value_names_the_key_the_env_var_and_what_is_allowed(monkeypatch, key, value, allowed):
    monkeypatch.setenv(f"AIRFLOW__HPCAI__{key}", value)
    settings = read_settings()  # never raises: the history store and estimate mode go on working
    assert settings.guard is None and settings.mode == "advise"
    with pytest.raises(ConfigurationError) as raised:
        settings.require_guard()
    message = str(raised.value)
    assert f"[hpcai] {key.lower()} (AIRFLOW__HPCAI__{key})" in message
    assert allowed in message and repr(value) in message
    assert "every task keeps its request" in message
    with pytest.raises(ConfigurationError, match=key.lower()):  # what the live policy builds its guard with
        live_guard.configured_spec()


def test_every_bad_key_is_named_at_once(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_KILL_BUDGET", "0")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_GUARD_BRAKE_WINDOW", "a thousand")
    message = read_settings().guard_error or ""
    assert "advisor_kill_budget" in message and "advisor_guard_brake_window" in message


def test_the_live_guard_of_a_home_follows_the_configured_spec(monkeypatch, tmp_path):
    assert live_guard._guard_of(str(tmp_path)).spec == GuardSpec()
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_KILL_BUDGET", "0.01")
    reset_settings()
    assert live_guard._guard_of(str(tmp_path)).spec.kill_budget == 0.01
    assert not (tmp_path / live_guard.STATE_FILE).exists()  # building it reads nothing, writes nothing
