"""Manufacturing optimisation: a Dask sweep of the line model, a statsmodels surrogate, a recommendation.

The decision: the buffer size between stations (the same before every station after the first)
and the crew per station. Material-shortage scenarios (deliveries of a lot every so often) are
the uncertainty, each with a probability. The objective is the expected margin per hour::

    60 * throughput * (unit_value - energy_price * energy_per_unit)
        - wage * staff * stations - slot_cost * buffer * (stations - 1)

The surrogate, one per scenario, is an OLS fit (statsmodels) of throughput and of energy per
unit on ``u = log(1 + buffer)`` and ``s = staff / required_staff``: ``1, u, u^2, s, s^2, u s``
(``s^2`` only when three or more crew sizes were swept).
It is evaluated on every whole buffer size in the swept range (also ones not simulated) and
every crew size; the best expected margin is the recommendation, which a confirmation run
then simulates with fresh seeds.

On an adaptive Dask cluster the sweep is cut into enough tasks for the cluster's maximum (so
the scheduler asks for more workers) and records what the workers used up to its end
(``dask_usage.json``: worker jobs, worker-hours, and a fixed cluster sized for the peak), which
the surrogate step and the report pick up.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.casestudies.common import clean, write_json
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "BASE_LINE",
    "ECONOMICS",
    "SCENARIOS",
    "USAGE_FILE",
    "check_confirmation",
    "features",
    "fit_surrogate",
    "line_params",
    "plan_confirmation",
    "predict",
    "read_usage",
    "recommend",
    "record_usage",
    "run_batch",
    "run_sweep",
    "sweep_points",
]

#: Three stations; the middle one breaks down. Service stretches by required_staff / staff.
BASE_LINE: list[dict[str, Any]] = [
    {"name": "cutting", "service_mean": 0.9, "service_dist": "lognormal", "service_cv": 0.6, "required_staff": 3},
    {"name": "welding", "service_mean": 1.0, "service_dist": "exponential", "mtbf": 150.0, "mttr": 12.0,
     "required_staff": 3, "power_busy_kw": 18.0},
    {"name": "assembly", "service_mean": 0.95, "service_dist": "lognormal", "service_cv": 0.6, "required_staff": 3},
]
#: Material-supply scenarios: lots of ``material_lot`` units every ``material_interval`` minutes (mean).
SCENARIOS: dict[str, dict[str, Any]] = {
    "no_shortage": {"material_lot": 0},
    "mild_shortage": {"material_lot": 30, "material_interval": 55.0, "material_initial": 60},
    "severe_shortage": {"material_lot": 15, "material_interval": 50.0, "material_initial": 30},
}
ECONOMICS = {"unit_value": 12.0, "energy_price": 0.2, "wage": 25.0, "slot_cost": 3.0}
_METRICS = ("throughput", "energy_per_unit_kwh")


def line_params(buffer: int, staff: int, scenario: str, *, horizon: float, warmup: float) -> dict[str, Any]:
    """``assembly_line`` kernel parameters of one configuration under one scenario."""
    if scenario not in SCENARIOS:
        raise InvalidJobSpecError(f"unknown shortage scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
        raise InvalidJobSpecError(f"buffer sizes are whole numbers >= 0, got {buffer!r}")
    if isinstance(staff, bool) or not isinstance(staff, int) or staff < 1:
        raise InvalidJobSpecError(f"crew sizes are whole numbers >= 1, got {staff!r}")
    stations = copy.deepcopy(BASE_LINE)
    for i, st in enumerate(stations):
        st["staff"] = staff
        st["buffer"] = buffer if i else 0
    return {"stations": stations, "horizon": float(horizon), "warmup": float(warmup), "progress_lines": 1,
            **SCENARIOS[scenario]}


def sweep_points(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (buffer, staff, scenario) of the sweep, checked.

    :param params: ``buffers``, ``staffing`` (crew sizes) and ``scenarios`` (names in :data:`SCENARIOS`).
    """
    buffers = [int(b) for b in params.get("buffers") or []]
    staffing = [int(s) for s in params.get("staffing") or []]
    names = list(params.get("scenarios") or [])
    if len(set(buffers)) < 3 or len(set(staffing)) < 2 or not names:
        raise InvalidJobSpecError("the surrogate needs at least 3 buffer sizes, 2 crew sizes and 1 scenario")
    pts = [{"buffer": b, "staff": s, "scenario": c} for c, s, b in itertools.product(names, staffing, buffers)]
    for p in pts:
        line_params(p["buffer"], p["staff"], p["scenario"], horizon=1.0, warmup=0.0)
    return pts


def run_batch(points: Sequence[Mapping[str, Any]], seeds: Sequence[int], horizon: float,
              warmup: float) -> list[dict[str, Any]]:
    """Replications of several configurations (one Dask task; batched so a task runs long enough)."""
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("kernels", "simulation_kernels.assembly_line")
    from simulation_kernels.assembly_line import run_replications

    rows = []
    for p in points:
        out = run_replications(line_params(p["buffer"], p["staff"], p["scenario"], horizon=horizon, warmup=warmup),
                               seeds=list(seeds))
        agg = out["aggregate"]
        rows.append({**p, **{m: agg[m]["mean"] for m in _METRICS}, **{f"{m}_ci95": agg[m]["ci95"] for m in _METRICS},
                     "replications": len(seeds)})
    return rows


USAGE_FILE = "dask_usage.json"


def run_sweep(client: Client, points: Sequence[Mapping[str, Any]], *, replications: int = 8,
              horizon: float = 4000.0, warmup: float = 200.0, seed: int = 0, batches: int | None = None,
              usage_dir: str | None = None) -> list[dict[str, Any]]:
    """Simulate every point (common random numbers: the same seeds everywhere) on the Dask cluster.

    :param batches: Dask tasks to cut the sweep into (default: twice the workers the cluster may
        have: its adaptive maximum, else the workers it has).
    :param usage_dir: where to write :data:`USAGE_FILE` (default: the running Airflow task's
        results folder, when there is one).
    """
    from airflow_provider_hpcai.dask.usage import capacity_of

    points = list(points)
    if not points:
        return []
    n = min(len(points), batches or 2 * capacity_of(client))
    chunks = [points[i::n] for i in range(n)]
    seeds = list(range(int(seed), int(seed) + int(replications)))
    futures = client.map(run_batch, chunks, [seeds] * n, [horizon] * n, [warmup] * n, pure=False)
    rows = [row for part in client.gather(futures) for row in part]
    record_usage(client, usage_dir or _running_task_folder(), tasks=n)
    return sorted(rows, key=lambda r: (r["scenario"], r["staff"], r["buffer"]))


def _running_task_folder() -> str | None:
    """The results folder of the Airflow task running this code (the case-study DAGs' layout), if any."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:  # not inside a running Airflow task
        return None
    from airflow_provider_hpcai.casestudies.common import results_folder

    try:
        return results_folder(context["params"].get("results_dir"), context["dag"].dag_id, context["run_id"])
    except (KeyError, AttributeError, TypeError):
        return None


def record_usage(client: Client, folder: str | None, **extra: Any) -> dict[str, Any] | None:
    """What the cluster's workers used so far (see :mod:`airflow_provider_hpcai.dask.usage`), written to
    ``<folder>/dask_usage.json`` when ``folder`` is given; ``None`` for a cluster this process did not start."""
    from airflow_provider_hpcai.dask.usage import usage_of

    usage = usage_of(client)
    if usage is None:
        return None
    usage = {**usage, **extra}
    if folder:
        write_json(os.path.join(folder, USAGE_FILE), usage)
    return usage


def read_usage(folder: str) -> dict[str, Any] | None:
    """The sweep's :data:`USAGE_FILE` in ``folder``, if it wrote one."""
    path = os.path.join(folder, USAGE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def features(buffer: Any, staff: Any, required: float, *, staff_squared: bool = True) -> Any:
    """The surrogate's design matrix: ``1, u, u^2, s, [s^2,] u s`` with ``u = log1p(buffer)``, ``s = staff/required``.

    ``s^2`` needs three crew sizes or more in the sweep (with two it duplicates ``1`` and ``s``).
    """
    import numpy as np

    u = np.log1p(np.asarray(buffer, dtype=float))
    s = np.asarray(staff, dtype=float) / float(required)
    cols = [np.ones_like(u), u, u * u, s, *([s * s] if staff_squared else []), u * s]
    return np.column_stack(cols)


def fit_surrogate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """OLS fits per scenario and metric: ``{"models": {scenario: {metric: {"coef", "r2", "rmse"}}}, ...}`` (JSON-able)."""
    import numpy as np
    import statsmodels.api as sm

    required = float(BASE_LINE[0]["required_staff"])
    staff_squared = len({r["staff"] for r in rows}) >= 3
    out: dict[str, Any] = {"required_staff": required, "staff_squared": staff_squared, "models": {}}
    present = {r["scenario"] for r in rows}
    for name in [n for n in SCENARIOS if n in present]:
        sub = [r for r in rows if r["scenario"] == name]
        X = features([r["buffer"] for r in sub], [r["staff"] for r in sub], required, staff_squared=staff_squared)
        models = {}
        for metric in _METRICS:
            y = np.array([r[metric] for r in sub], dtype=float)
            fit = sm.OLS(y, X).fit()
            models[metric] = {"coef": fit.params.tolist(), "r2": float(fit.rsquared) if len(sub) > X.shape[1] else 1.0,
                              "rmse": float(np.sqrt(np.mean(fit.resid ** 2)))}
        out["models"][name] = models
    return out


def predict(surrogate: Mapping[str, Any], scenario: str, buffer: Any, staff: Any) -> dict[str, Any]:
    """Predicted throughput and energy per unit (arrays, like ``buffer`` and ``staff``)."""
    import numpy as np

    X = features(np.atleast_1d(buffer), np.atleast_1d(staff), surrogate["required_staff"],
                 staff_squared=surrogate.get("staff_squared", True))
    m = surrogate["models"][scenario]
    return {metric: X @ np.asarray(m[metric]["coef"]) for metric in _METRICS}


def margin_per_hour(throughput: Any, energy_per_unit: Any, buffer: Any, staff: Any,
                    economics: Mapping[str, float], stations: int = len(BASE_LINE)) -> Any:
    """The objective (currency per hour); see the module docstring."""
    import numpy as np

    e = {**ECONOMICS, **dict(economics)}
    th = np.maximum(np.asarray(throughput, dtype=float), 0.0)
    return (60.0 * th * (e["unit_value"] - e["energy_price"] * np.asarray(energy_per_unit, dtype=float))
            - e["wage"] * np.asarray(staff, dtype=float) * stations
            - e["slot_cost"] * np.asarray(buffer, dtype=float) * (stations - 1))


def recommend(surrogate: Mapping[str, Any], probabilities: Mapping[str, float], *, buffers: Sequence[int],
              staffing: Sequence[int], economics: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The configuration with the best expected margin over the scenarios, by the surrogate.

    :param probabilities: scenario -> probability (normalised here; scenarios the surrogate lacks are refused).
    :param buffers: the swept buffer sizes: every whole size between their min and max is a candidate.
    :param staffing: the candidate crew sizes.
    """
    import numpy as np

    missing = set(probabilities) - set(surrogate["models"])
    if missing or not probabilities:
        raise InvalidJobSpecError(f"no surrogate for scenarios {sorted(missing)}; sweep them first")
    total = math.fsum(float(p) for p in probabilities.values())
    if total <= 0:
        raise InvalidJobSpecError("scenario probabilities must add up to more than 0")
    grid_b, grid_s = np.meshgrid(np.arange(min(buffers), max(buffers) + 1), np.array(sorted(set(staffing))))
    b, s = grid_b.ravel(), grid_s.ravel()
    expected = np.zeros(b.size)
    per: dict[str, Any] = {}
    for name, prob in probabilities.items():
        pred = predict(surrogate, name, b, s)
        per[name] = pred
        expected += float(prob) / total * margin_per_hour(pred["throughput"], pred["energy_per_unit_kwh"], b, s,
                                                        economics or {})
    order = np.argsort(-expected)
    best = int(order[0])
    return clean({
        "buffer": int(b[best]), "staff": int(s[best]), "expected_margin_per_hour": float(expected[best]),
        "predicted": {name: {"throughput": float(p["throughput"][best]),
                             "energy_per_unit_kwh": float(p["energy_per_unit_kwh"][best])} for name, p in per.items()},
        "probabilities": {k: float(v) / total for k, v in probabilities.items()},
        "economics": {**ECONOMICS, **dict(economics or {})},
        "runner_up": [{"buffer": int(b[i]), "staff": int(s[i]), "expected_margin_per_hour": float(expected[i])}
                      for i in order[1:5].tolist()],
    })


def plan_confirmation(rec: Mapping[str, Any], params: Mapping[str, Any], backend: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One confirmation run of the recommended configuration per scenario (rows for ``expand_kwargs``).

    Fresh seeds (after the sweep's), more replications: an independent check of the surrogate.
    """
    reps = int(params.get("confirm_replications") or 16)
    seed = int(params.get("seed") or 0) + int(params.get("replications") or 8) + 1000
    rows = []
    for name in rec["predicted"]:
        kernel = line_params(int(rec["buffer"]), int(rec["staff"]), name, horizon=float(params["horizon"]),
                             warmup=float(params["warmup"]))
        rows.append({"kernel_params": {**kernel, "replications": reps, "seed": seed, "progress_lines": 2},
                     "ranks": 1, **backend})
    return rows


def check_confirmation(rec: Mapping[str, Any], confirmations: Sequence[Mapping[str, Any]], *,
                       tolerance: float = 0.1) -> dict[str, Any]:
    """Predicted against simulated, per scenario: the relative error and whether it is within
    ``max(tolerance, 2 x the confirmation's 95 % half-width)``."""
    out = []
    names = list(rec["predicted"])
    if len(names) != len(confirmations):
        raise InvalidJobSpecError(f"{len(confirmations)} confirmation runs for {len(names)} scenarios")
    for name, run in zip(names, confirmations):  # plan_confirmation's order
        agg = run["summary"]["aggregate"]
        row: dict[str, Any] = {"scenario": name}
        for metric in _METRICS:
            pred, sim, ci = rec["predicted"][name][metric], agg[metric]["mean"], agg[metric]["ci95"]
            err = (pred - sim) / sim if sim else float("inf")
            row[metric] = {"predicted": pred, "simulated": sim, "ci95": ci, "rel_error": err,
                           "ok": abs(err) <= max(tolerance, 2 * ci / abs(sim) if sim else 0.0)}
        out.append(row)
    return {"scenarios": out, "confirmed": all(r[m]["ok"] for r in out for m in _METRICS)}


def analyse(rows: Sequence[Mapping[str, Any]], params: Mapping[str, Any], results_dir: str) -> dict[str, Any]:
    """Fit the surrogate, recommend, plot; writes ``sweep.json`` and ``throughput_vs_buffer.png``."""
    from airflow_provider_hpcai.casestudies import plots

    surrogate = fit_surrogate(rows)
    probs = {k: v for k, v in (params.get("scenario_probabilities") or {}).items() if k in surrogate["models"]}
    probs = probs or {name: 1.0 for name in surrogate["models"]}
    rec = recommend(surrogate, probs, buffers=params["buffers"], staffing=params["staffing"],
                    economics=params.get("economics") or {})
    png = plots.throughput_vs_buffer(rows, surrogate, rec, os.path.join(results_dir, "throughput_vs_buffer.png"),
                                      predict=predict)
    usage = read_usage(results_dir)
    write_json(os.path.join(results_dir, "sweep.json"), {"rows": rows, "surrogate": surrogate, "recommendation": rec,
                                                         "dask_usage": usage})
    return clean({"recommendation": rec, "surrogate": surrogate, "points": len(rows), "plots": {"throughput": png},
                  "dask_usage": usage})
