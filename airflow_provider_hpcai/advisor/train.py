"""Training entry points: from the local job history or from an SWF trace."""

from __future__ import annotations

import os
from typing import Any

from airflow_provider_hpcai.advisor.history import JobRecord, record_from_swf
from airflow_provider_hpcai.advisor.models import CompactModel, TargetSpec
from airflow_provider_hpcai.advisor.online import run_online, table_from_records, train_compact

__all__ = ["DEFAULT_SPECS", "history_figures", "train_from_records", "train_from_swf"]

DEFAULT_SPECS = (
    TargetSpec(name="runtime"),
    TargetSpec(name="runtime_estimate", quantile=0.3),  # enforce's time_min (policy/live.py)
    TargetSpec(name="memory", quantile=0.99, alpha=0.008, floor=256 * 1024.0**2, abstain_ratio=0.9),
)


def history_figures(records: list[JobRecord], spec: TargetSpec) -> dict[str, Any]:
    """Kill rate, waste cut and calibration of ``spec`` replayed over the history itself."""
    import numpy as np

    table, _ = table_from_records(records, spec.name)
    table = table.sorted()
    online = run_online(table, spec)
    test = (np.arange(len(table)) >= online.test_start) & online.predicted
    value, request = table.value[test], table.request[test]
    procs = table.procs[test] if spec.name == "runtime" else np.ones(int(test.sum()))
    limit = online.limit[test]
    killed = value > limit
    waste_users = float(np.sum(procs * (request - value)))
    waste = float(np.sum(np.where(killed, procs * (limit + request - value), procs * (limit - value))))
    exceed = float(online.exceeded[test].mean()) if test.any() else 0.0
    return {
        "advisor": {
            "kill_rate": float(killed.mean()) if test.any() else 0.0,
            "waste_cut": 1.0 - waste / waste_users if waste_users > 0 else 0.0,
        },
        "model": {"exceedance": exceed, "target_rate": spec.target_rate,
                  "calibrated": abs(exceed - spec.target_rate) <= 0.015},
        "jobs": len(table),
    }


def train_from_records(
    records: list[JobRecord], specs: tuple[TargetSpec, ...] = DEFAULT_SPECS, *, version: str = "local"
) -> tuple[CompactModel, dict[str, Any]]:
    """Train on job records; the metrics are the run-time target's replay over the same history."""
    model, figures = train_compact(records, specs, version=version)
    metrics: dict[str, Any] = {"targets": figures}
    runtime = next((s for s in specs if s.name == "runtime"), None)
    if runtime is not None and "runtime" in model.targets:
        metrics.update(history_figures(records, runtime))
    return model, metrics


def train_from_swf(
    path: str | os.PathLike[str], *, quantile: float = 0.93, schedule: bool = True
) -> tuple[CompactModel, dict[str, Any]]:
    """Train the run-time model on an SWF trace; metrics are the full trace evaluation."""
    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, load_trace
    from airflow_provider_hpcai.advisor.swf import iter_valid, read_swf

    trace = read_swf(path)
    spec = TargetSpec(name="runtime", quantile=quantile)
    metrics = evaluate_trace(load_trace(trace, name=os.path.basename(os.fspath(path))), spec=spec,
                             schedule=schedule)
    records = [record_from_swf(r) for r in iter_valid(trace)]
    model, _ = train_compact(records, (spec, TargetSpec(name="runtime_estimate", quantile=0.3)), version="local")
    return model, metrics
