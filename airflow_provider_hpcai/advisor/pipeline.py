"""The steps of the training DAG (``dags/hpcai_advisor_training.py``), as plain functions.

Each step reads and writes files in one run folder under ``<advisor_home>/training/`` and
returns a small JSON-able summary (the DAG passes only these through XCom):

1. :func:`gather_history`: the history store's records, topped up with the synthetic
   bootstrap (:mod:`.bootstrap`) when fewer than ``min_jobs`` of them are usable;
2. :func:`train_candidate`: the compact model (QuantReg + online margins) on that history;
3. :func:`evaluate_candidate`: the time-ordered replay over the same history (kill rate,
   waste cut, calibration, for run time and memory) and the score that decides promotion;
4. :func:`promote_candidate`: an MLflow run and a registered version; alias ``champion``
   and ``<advisor_home>/champion.json`` move only when the score beats the champion's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord
from airflow_provider_hpcai.advisor.models import TargetSpec

__all__ = [
    "TRAINING_SPECS",
    "evaluate_candidate",
    "gather_history",
    "promote_candidate",
    "run_folder",
    "train_candidate",
]

#: Run time at q0.96 (a 4 % kill target, under the 5 % bar); memory at q0.99.
TRAINING_SPECS = (
    TargetSpec(name="runtime", quantile=0.96),
    TargetSpec(name="runtime_estimate", quantile=0.3),  # enforce's time_min (policy/live.py)
    TargetSpec(name="memory", quantile=0.99, alpha=0.008, floor=256 * 1024.0**2, abstain_ratio=0.9),
)
_KEEP_RUNS = 5
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def run_folder(home: str, run_id: str) -> str:
    """``<home>/training/<run_id>`` (created; only the newest few run folders are kept)."""
    root = os.path.join(os.path.abspath(home), "training")
    path = os.path.join(root, _SAFE.sub("_", run_id)[:200] or "run")
    os.makedirs(path, exist_ok=True)
    runs = sorted((os.path.join(root, d) for d in os.listdir(root)), key=os.path.getmtime)
    for old in runs[:-_KEEP_RUNS]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _usable(record: JobRecord) -> bool:
    return bool(record.elapsed_seconds and record.requested_seconds)


def _load_records(folder: str) -> list[JobRecord]:
    with open(os.path.join(folder, "records.jsonl"), encoding="utf-8") as handle:
        return [JobRecord.from_dict(json.loads(line)) for line in handle if line.strip()]


def gather_history(home: str, folder: str, *, min_jobs: int = 200, seed: int = 11) -> dict[str, Any]:
    """Write the training records to ``folder/records.jsonl``.

    :param home: the advisor home (history store).
    :param folder: this run's folder.
    :param min_jobs: below this many usable records (run time and limit known), add the
        synthetic bootstrap history.
    :param seed: seed of the synthetic history.
    """
    records = HistoryStore(home).records()
    stored = len(records)
    real = sum(1 for r in records if _usable(r))
    bootstrapped = real < min_jobs
    if bootstrapped:
        from airflow_provider_hpcai.advisor.bootstrap import synthetic_history

        records = records + synthetic_history(seed=seed)
    with open(os.path.join(folder, "records.jsonl"), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record.to_dict()) + "\n" for record in records)
    return {"folder": folder, "stored_jobs": stored, "usable_real_jobs": real,
            "training_jobs": len(records), "bootstrapped": bootstrapped}


def train_candidate(folder: str, *, specs: tuple[TargetSpec, ...] = TRAINING_SPECS) -> dict[str, Any]:
    """Train the compact model on ``folder/records.jsonl``; write ``folder/candidate.json``."""
    from airflow_provider_hpcai.advisor.online import train_compact

    model, figures = train_compact(_load_records(folder), specs, version="candidate")
    with open(os.path.join(folder, "candidate.json"), "w", encoding="utf-8") as handle:
        json.dump(model.to_dict(), handle)
    with open(os.path.join(folder, "specs.json"), "w", encoding="utf-8") as handle:
        json.dump([s.to_dict() for s in specs], handle)
    return {"folder": folder, "targets": sorted(model.targets), "series": len(model.series), "figures": figures}


def evaluate_candidate(folder: str) -> dict[str, Any]:
    """Replay the history in time order with the candidate's specs; write ``folder/metrics.json``.

    The run-time figures are the top-level ``advisor.*`` and ``model.*`` metrics the score uses;
    memory figures are under ``memory.``.
    """
    from airflow_provider_hpcai.advisor.registry import flat_metrics, score_of
    from airflow_provider_hpcai.advisor.train import history_figures

    records = _load_records(folder)
    with open(os.path.join(folder, "specs.json"), encoding="utf-8") as handle:
        specs = {s["name"]: TargetSpec(**s) for s in json.load(handle)}
    metrics: dict[str, Any] = {}
    if "runtime" in specs:
        metrics.update(history_figures(records, specs["runtime"]))
    if "memory" in specs:
        try:
            metrics["memory"] = history_figures(records, specs["memory"])
        except Exception as error:  # too little memory history: run time alone decides
            metrics["memory"] = {"skipped": str(error)}
    flat = flat_metrics(metrics)
    score = score_of(flat)
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, default=float)
    return {"folder": folder, "score": score, "metrics": flat}


def promote_candidate(folder: str, *, home: str, tracking_uri: str | None,
                      params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Log, register, and promote the candidate if it beats the champion (MLflow imported here)."""
    from airflow_provider_hpcai.advisor.models import CompactModel
    from airflow_provider_hpcai.advisor.registry import register_model

    with open(os.path.join(folder, "candidate.json"), encoding="utf-8") as handle:
        model = CompactModel.from_dict(json.load(handle))
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    result = register_model(model, metrics, home=home, tracking_uri=tracking_uri, params=params)
    return dict(result.__dict__)
