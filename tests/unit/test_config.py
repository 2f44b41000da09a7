"""The ``[hpcai]`` options that follow Airflow's own settings unless the provider's are set."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai import config
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.sensors.slurm import SlurmJobSensor


@pytest.fixture()
def unset(monkeypatch):
    monkeypatch.delenv("AIRFLOW__HPCAI__DEFAULT_DEFERRABLE", raising=False)
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("operators", "hpcai", "expected"),
    [
        (None, None, False),  # Airflow's own default
        ("True", None, True),  # the deployment's [operators] default_deferrable, as the cncf provider
        ("False", None, False),
        ("True", "False", False),  # [hpcai] overrides it when set
        ("False", "True", True),
    ],
)
def test_deferrable_default_follows_airflow_unless_hpcai_sets_it(unset, operators, hpcai, expected):
    if operators is not None:
        unset.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", operators)
    if hpcai is not None:
        unset.setenv("AIRFLOW__HPCAI__DEFAULT_DEFERRABLE", hpcai)
    assert config.default_deferrable() is expected
    assert SlurmJobOperator(task_id="job", script="true").deferrable is expected
    assert SlurmJobSensor(task_id="watch", job_id="1").deferrable is expected
    assert SlurmJobOperator(task_id="explicit", script="true", deferrable=not expected).deferrable is (not expected)


def test_the_hpcai_option_is_unset_by_default():
    assert config.CONFIG_OPTIONS["default_deferrable"]["default"] is None
    assert "[operators] default_deferrable" in config.CONFIG_OPTIONS["default_deferrable"]["description"]


def test_airflow_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert config.airflow_home() == str(tmp_path / "home")
