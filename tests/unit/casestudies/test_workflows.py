"""The case-study DAGs: shape, params, and their templates (manifest = DAG params, factory builds the DAG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hpcai.casestudies import workflows
from airflow_provider_hpcai.templates.repository import TemplateRepository

ROOT = Path(__file__).resolve().parents[3]
CASES = {
    "climate-adaptive": (workflows.climate_adaptive, "climate_adaptive"),
    "seismic-risk": (workflows.seismic_risk, "seismic_risk"),
    "manufacturing-optimization": (workflows.manufacturing_optimization, "manufacturing_optimization"),
}


def test_climate_dag_fans_out_over_storms_then_aggregates_on_dask() -> None:
    dag = workflows.climate_adaptive()
    tasks = dag.task_dict
    assert list(tasks) == ["plan", "climate_run", "detect_storms", "storm_rainfall", "rainfall_totals", "report"]
    assert tasks["storm_rainfall"].upstream_task_ids == {"detect_storms"}
    # zero storms skip the mapped task; the aggregation must still run (and report "no storm")
    assert tasks["rainfall_totals"].trigger_rule == "none_failed"
    assert type(tasks["rainfall_totals"]).__name__ == "_DaskDecoratedOperator"
    assert dag.params["ranks"] >= 2 and dag.params["backend"] == "local"


def test_seismic_and_manufacturing_dags() -> None:
    seismic = workflows.seismic_risk().task_dict
    assert seismic["hazard"].upstream_task_ids == {"plan", "scenario"}
    manufacturing = workflows.manufacturing_optimization().task_dict
    assert manufacturing["confirm"].upstream_task_ids == {"plan_confirmation"}
    assert manufacturing["check"].upstream_task_ids == {"surrogate", "confirm", "plan"}


def test_overrides_must_name_known_params() -> None:
    dag = workflows.seismic_risk("quake_x", overrides={"magnitudes": [6.0]})
    assert dag.dag_id == "quake_x" and dag.params["magnitudes"] == [6.0]
    with pytest.raises(ValueError, match="unknown parameters \\['magnitude'\\]"):
        workflows.seismic_risk(overrides={"magnitude": 6.0})


@pytest.mark.parametrize("folder", sorted(CASES))
def test_template_parameters_mirror_the_dag_params(folder: str) -> None:
    import yaml

    builder, _ = CASES[folder]
    manifest = yaml.safe_load((ROOT / "airflow_provider_hpcai/templates/builtin" / folder / "template.yaml").read_text())
    defaults = workflows.default_params(builder)
    for name, schema in manifest["parameters"]["properties"].items():
        assert name in defaults, f"{folder}: template parameter {name} is not a DAG param"
        assert schema["default"] == defaults[name], f"{folder}: default of {name} differs from the DAG's"


@pytest.mark.parametrize("folder", sorted(CASES))
def test_template_publishes_and_its_factory_builds_the_dag(folder: str, tmp_path: Path) -> None:
    from airflow_provider_hpcai.templates.loader import load_instance_dags

    repo = TemplateRepository(tmp_path / "repo")
    repo.publish(ROOT / "airflow_provider_hpcai/templates/builtin" / folder)
    record = repo.instantiate(folder, None, {"backend": "local"}, "alice")
    dags = load_instance_dags(repo)
    dag = dags[record["dag_id"]]
    _, base = CASES[folder]
    assert set(dag.task_dict) == set(CASES[folder][0]().task_dict)
    assert dag.params["backend"] == "local" and dag.dag_id != base


def test_results_go_to_the_param_then_the_config_option_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_hpcai.casestudies.common import results_folder, results_root

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HPCAI_RESULTS_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__HPCAI__RESULTS_DIR", raising=False)
    assert results_root() == str(tmp_path / "home" / "hpcai" / "results")
    monkeypatch.setenv("HPCAI_RESULTS_DIR", str(tmp_path / "env"))
    assert results_root() == str(tmp_path / "env")
    monkeypatch.setenv("AIRFLOW__HPCAI__RESULTS_DIR", str(tmp_path / "cfg"))
    assert results_root() == str(tmp_path / "cfg")
    assert results_root(str(tmp_path / "param")) == str(tmp_path / "param")
    folder = results_folder(None, "climate/../x", "manual__2026-01-01T00:00:00+00:00")
    assert folder.startswith(str(tmp_path / "cfg") + "/") and ".." not in Path(folder).relative_to(tmp_path).parts
