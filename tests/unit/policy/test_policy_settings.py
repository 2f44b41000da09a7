from __future__ import annotations

import os

import pytest

from airflow_provider_hpcai.policy import settings


@pytest.fixture(autouse=True)
def fresh():
    settings.reset_settings()
    yield
    settings.reset_settings()


def test_settings_come_from_the_hpcai_section(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "  Enforce ")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path / "adv"))
    monkeypatch.setenv("AIRFLOW__HPCAI__MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow.db")
    read = settings.read_settings()
    assert read.mode == "enforce"
    assert read.home == str(tmp_path / "adv")
    assert read.tracking_uri == "sqlite:////srv/mlflow.db"


def test_defaults_when_nothing_is_set(monkeypatch, tmp_path):
    for key in ("ADVISOR_MODE", "ADVISOR_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(f"AIRFLOW__HPCAI__{key}", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    read = settings.read_settings()
    assert read.mode == "advise"  # the default declared in the provider's config
    assert read.home == str(tmp_path / "airflow-home" / "hpcai" / "advisor")  # follows $AIRFLOW_HOME
    assert read.tracking_uri is None


def test_default_home_resolves_airflow_home_as_airflow_does(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__HPCAI__ADVISOR_HOME", raising=False)
    monkeypatch.setenv("SITE_ROOT", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_HOME", "$SITE_ROOT/af")  # Airflow expands variables in AIRFLOW_HOME
    assert settings.read_settings().home == str(tmp_path / "af" / "hpcai" / "advisor")
    settings.reset_settings()
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert settings.read_settings().home == str(tmp_path / "user" / "airflow" / "hpcai" / "advisor")


def test_settings_are_cached_until_reset(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "off")
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
    assert settings.read_settings().mode == "off"
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "enforce")
    assert settings.read_settings().mode == "off"  # the policy reads [hpcai] once per process
    settings.reset_settings()
    assert settings.read_settings().mode == "enforce"


def test_relative_and_user_homes_become_absolute(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", "~/somewhere")
    assert settings.read_settings().home == os.path.join(os.path.expanduser("~"), "somewhere")


@pytest.mark.parametrize(("stated", "soft", "plans"), [
    (None, None, False),  # nothing stated: no --time-min anywhere
    (None, "True", True),  # a soft-limit Slurm: enforce plans with its estimate too
    ("False", "True", False),  # the site turned it off explicitly
    ("True", None, True),  # stated on, yet the decision applies it only with advisor_time_min_soft
])
def test_enforce_time_min_follows_the_soft_limit_setting_unless_stated(monkeypatch, stated, soft, plans):
    for key, value in (("ADVISOR_ENFORCE_TIME_MIN", stated), ("ADVISOR_TIME_MIN_SOFT", soft)):
        if value is None:
            monkeypatch.delenv(f"AIRFLOW__HPCAI__{key}", raising=False)
        else:
            monkeypatch.setenv(f"AIRFLOW__HPCAI__{key}", value)
    read = settings.read_settings()
    assert read.enforce_time_min is plans and read.time_min_soft is (soft == "True")
