"""MLflow tracking and registration of advisor models (MLflow is imported lazily).

Each training run logs its parameters, metrics and evaluation plots, then registers a model
version (a small pyfunc wrapper around the compact JSON). The alias ``champion`` moves to the
new version only when its score beats the current champion's; on promotion the compact model
is also written to ``<advisor_home>/champion.json`` for :mod:`~airflow_provider_hpcai.advisor.cache`.

By default the tracking store is SQLite at ``<advisor_home>/mlflow.db`` and artifacts live
under ``<advisor_home>/mlartifacts`` (absolute paths); any tracking URI can be configured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Any

from airflow_provider_hpcai.advisor.cache import write_champion
from airflow_provider_hpcai.advisor.models import CompactModel

__all__ = ["MODEL_NAME", "RegistrationResult", "flat_metrics", "register_model", "score_of", "tracking_uri_for"]

MODEL_NAME = "hpcai-advisor"
EXPERIMENT = "hpcai-advisor"
SCORE_TAG = "hpcai.score"


@dataclasses.dataclass
class RegistrationResult:
    """What :func:`register_model` did."""

    run_id: str
    version: str
    score: float
    promoted: bool
    previous_champion: str | None
    previous_score: float | None
    champion_path: str | None


def tracking_uri_for(home: str, tracking_uri: str | None = None) -> str:
    """The tracking URI: ``tracking_uri`` when given, else SQLite under ``home`` (absolute)."""
    if tracking_uri:
        return tracking_uri
    return "sqlite:///" + os.path.join(os.path.abspath(home), "mlflow.db")


def score_of(metrics: dict[str, Any], kill_bar: float = 0.05) -> float:
    """One number to compare models: the waste cut when the kill rate is within ``kill_bar``
    (and the model is calibrated), else a negative number that is worse the more it kills."""
    kill = float(metrics.get("advisor.kill_rate", 1.0))
    cut = float(metrics.get("advisor.waste_cut", -1.0))
    calibrated = bool(metrics.get("model.calibrated", 1.0))
    if kill <= kill_bar and calibrated and math.isfinite(cut):
        return cut
    return -1.0 - kill


def flat_metrics(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested evaluation dict as ``a.b.c`` -> float (booleans as 0/1)."""
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name + "."))
        elif isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
            out[name.replace("policies.", "")] = float(value)
    return out


def _plots(metrics: dict[str, float], folder: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k[: -len(".kill_rate")] for k in metrics if k.endswith(".kill_rate")})
    paths = []
    if names:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in names:
            ax.scatter(100 * metrics[f"{name}.kill_rate"], 100 * metrics.get(f"{name}.waste_cut", 0.0), label=name)
        ax.axvline(5.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("kill rate (%)")
        ax.set_ylabel("cut in wasted core-hours vs users (%)")
        ax.legend(fontsize=8)
        ax.set_title("wall-time limits: kills against waste")
        path = os.path.join(folder, "kills_vs_waste.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    if "model.exceedance" in metrics:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.bar(["target", "observed"], [100 * metrics["model.target_rate"], 100 * metrics["model.exceedance"]])
        ax.set_ylabel("jobs above prediction (%)")
        ax.set_title("calibration")
        path = os.path.join(folder, "calibration.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def register_model(
    model: CompactModel,
    metrics: dict[str, Any],
    *,
    home: str,
    tracking_uri: str | None = None,
    params: dict[str, Any] | None = None,
    name: str = MODEL_NAME,
) -> RegistrationResult:
    """Log a training run, register a version, and promote it to ``champion`` if it is better.

    :param model: the trained compact model.
    :param metrics: its evaluation (nested dict from the evaluation, or flat ``a.b`` names).
    :param home: the advisor home (default tracking store, artifacts, champion export).
    :param tracking_uri: another MLflow tracking URI, if configured.
    :param params: training parameters to log.
    :param name: registered model name.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("advisor", "mlflow", feature="Registering advisor models")
    import mlflow
    from mlflow import MlflowClient

    from airflow_provider_hpcai.advisor.pyfunc import CompactAdvisorModel

    home = os.path.abspath(home)
    os.makedirs(home, exist_ok=True)
    uri = tracking_uri_for(home, tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(EXPERIMENT, artifact_location="file://" + os.path.join(home, "mlartifacts"))
    )
    flat = flat_metrics(metrics) if any(isinstance(v, dict) for v in metrics.values()) else dict(metrics)
    score = score_of(flat)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: str(v)[:500] for k, v in (params or {}).items()})
        mlflow.log_metrics({**{k.replace("%", "pct"): v for k, v in flat.items()}, "score": score})
        for path in _plots(flat, tmp):
            mlflow.log_artifact(path, artifact_path="plots")
        compact_path = os.path.join(tmp, "compact_model.json")
        with open(compact_path, "w", encoding="utf-8") as handle:
            json.dump(model.to_dict(), handle)
        info = mlflow.pyfunc.log_model(
            name="advisor",
            python_model=CompactAdvisorModel(),
            artifacts={"compact_model": compact_path},
            pip_requirements=["mlflow", "airflow-provider-hpcai"],
        )
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, name)
    client.set_model_version_tag(name, version.version, SCORE_TAG, repr(score))
    previous, previous_score = None, None
    try:
        champion = client.get_model_version_by_alias(name, "champion")
        previous = str(champion.version)
        previous_score = float(champion.tags.get(SCORE_TAG, "-inf"))
    except Exception:  # no champion yet
        champion = None
    promoted = previous_score is None or score > previous_score
    champion_path = None
    if promoted:
        client.set_registered_model_alias(name, "champion", version.version)
        exported = dataclasses.replace(model, version=f"{name}/{version.version}", metrics={"score": score})
        champion_path = write_champion(home, exported)
    return RegistrationResult(run_id, str(version.version), score, promoted, previous, previous_score, champion_path)
