"""The manufacturing sweep on an adaptive cluster: cut for the cluster's maximum, its worker usage
recorded next to its results and named in the report."""

from __future__ import annotations

import json

from airflow_provider_hpcai.casestudies import manufacturing
from airflow_provider_hpcai.casestudies.report import usage_fact
from airflow_provider_hpcai.hooks.dask import DaskHook

PARAMS = {"buffers": [0, 2, 6], "staffing": [2, 3], "scenarios": ["no_shortage"]}


def test_sweep_on_an_adaptive_cluster_records_its_worker_usage(tmp_path) -> None:
    points = manufacturing.sweep_points(PARAMS)
    hook = DaskHook(extras={"cluster": "local", "processes": False, "memory_limit": "512MiB",
                            "adaptive": {"minimum": 1, "maximum": 2, "interval": "0.2s", "scale_down_wait": "1s"}})
    with hook.get_client() as client:
        rows = manufacturing.run_sweep(client, points, replications=2, horizon=800.0, warmup=50.0,
                                       usage_dir=str(tmp_path))
        fixed = manufacturing.run_sweep(client, points, replications=2, horizon=800.0, warmup=50.0, batches=1)
    assert rows == fixed, "the same rows however the sweep is cut (common random numbers)"
    usage = json.loads((tmp_path / manufacturing.USAGE_FILE).read_text())
    assert usage["tasks"] == 4, "twice the adaptive maximum, not twice the one worker it started with"
    assert usage["workers_started"] >= 1 and usage["worker_hours"] > 0
    assert manufacturing.read_usage(str(tmp_path)) == usage


def test_report_names_worker_jobs_hours_and_the_fixed_cluster() -> None:
    name, text = usage_fact({"workers_started": 5, "worker_jobs": 5, "peak_workers": 3, "span_seconds": 120.0,
                             "worker_hours": 0.05, "fixed_worker_hours": 0.1})
    assert name == "Dask workers (worker-hours)"
    assert text == ("5 worker(s) in 5 Slurm worker job(s), 0.0500 worker-hours; a fixed cluster sized for the peak "
                    "(3 workers for 120 s) would hold 0.1000 (50 % saved)")
    assert usage_fact(None) is None


def test_manufacturing_and_seismic_reports_carry_the_worker_hours(tmp_path) -> None:
    from airflow_provider_hpcai.casestudies.report import case_report

    usage = {"workers_started": 4, "worker_jobs": 4, "peak_workers": 3, "span_seconds": 60.0,
             "worker_hours": 0.03, "fixed_worker_hours": 0.05}
    th = {"predicted": 0.8, "simulated": 0.79, "ci95": 0.01, "rel_error": 0.012, "ok": True}
    en = {"predicted": 0.6, "simulated": 0.61, "ci95": 0.01, "rel_error": -0.016, "ok": True}
    manufacturing_result = {
        "points": 45, "dask_usage": usage,
        "recommendation": {"buffer": 4, "staff": 3, "expected_margin_per_hour": 321.0},
        "check": {"confirmed": True, "scenarios": [{"scenario": "no_shortage", "throughput": th,
                                                    "energy_per_unit_kwh": en}]}}
    seismic_result = {"scenarios": [{"soil": "rock"}], "n_scenarios": 1, "n_sites": 10, "map_cells": 100,
                      "level": 0.5, "events_per_year": 0.05, "worst_site_x_m": 300.0, "worst_site_p": 0.4,
                      "dask_usage": usage}
    for dag_id, name, result in (("manufacturing_optimization", "result.json", manufacturing_result),
                                 ("seismic_risk", "hazard.json", seismic_result)):
        folder = tmp_path / dag_id
        folder.mkdir()
        (folder / name).write_text(json.dumps(result))
        with open(case_report(dag_id, str(folder)), encoding="utf-8") as handle:
            html = handle.read()
        assert "Dask workers (worker-hours)" in html, dag_id
        assert "4 worker(s) in 4 Slurm worker job(s), 0.0300 worker-hours" in html
        assert "a fixed cluster sized for the peak (3 workers for 60 s) would hold 0.0500 (40 % saved)" in html
