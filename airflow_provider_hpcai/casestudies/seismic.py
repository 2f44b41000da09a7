"""Seismic risk case study: an ensemble of earthquake scenarios -> hazard curves and a risk map.

Scenarios are the product of sources (epicentre positions along the profile), magnitudes and
soil models; each runs the ``seismic`` kernel (a mapped task). Weights: Gutenberg-Richter over
magnitudes (``10**(-b M)``, normalised), equal over sources and over soil models (a logic tree
of alternatives). On Dask each worker reduces one scenario's peak-motion fields to exceedance
indicators; the client sums them with the weights:

* hazard curve of a site: ``P(motion > y | event) = sum_s w_s P_s(y) / sum_s w_s`` where ``P_s`` is
  a step at the scenario's peak (``sigma_ln = 0``) or, as in probabilistic seismic hazard analysis,
  a lognormal scatter of the motion around it (``sigma_ln`` in natural-log units, default 0.5);
  the annual probability is ``1 - exp(-rate * P)`` for ``rate`` events per year;
* risk map: the same probability at one ground-motion level over the grid points of the
  cross-section's upper part (``map_depth``, default the upper half: above the sources), absorbing
  layers cropped.

The kernel's peak motion is of the acoustic field: a relative measure for comparing scenarios
and soils, not a calibrated ground velocity.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.casestudies.common import clean, write_json
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "SOIL_MODELS",
    "aggregate_hazard",
    "annual_probability",
    "default_levels",
    "exceedance_probability",
    "plan_ensemble",
    "scenario_exceedance",
    "scenarios",
]

#: Soil models as seismic-kernel parameters (depths and widths as fractions of the domain).
SOIL_MODELS: dict[str, dict[str, Any]] = {
    "rock": {"velocity_model": "homogeneous", "vp_m_s": 2200.0},
    "layered": {"velocity_model": "layered", "vp_m_s": 900.0, "layers": [[0.15, 1500.0], [0.4, 2200.0]]},
    "basin": {"velocity_model": "basin", "vp_m_s": 2200.0, "basin_vp_m_s": 600.0, "basin_width_m": 0.45,
              "basin_depth_m": 0.25},
}


def _soil_params(name: str, width_m: float, depth_m: float) -> dict[str, Any]:
    if name not in SOIL_MODELS:
        raise InvalidJobSpecError(f"unknown soil model {name!r}; choose from {', '.join(SOIL_MODELS)}")
    p = dict(SOIL_MODELS[name])
    if "layers" in p:
        p["layers"] = [[round(top * depth_m, 3), vp] for top, vp in p["layers"]]
    if name == "basin":
        p["basin_width_m"] = round(p["basin_width_m"] * width_m, 3)
        p["basin_depth_m"] = round(p["basin_depth_m"] * depth_m, 3)
    return p


def scenarios(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ensemble: one scenario per (source, magnitude, soil), with its weight and kernel parameters.

    :param params: ``sources`` (epicentre x as fractions of the width, 0-1), ``magnitudes``,
        ``soils`` (names in :data:`SOIL_MODELS`), ``b_value``, ``nx``, ``nz``, ``dx_m``,
        ``steps``, ``sponge_cells``.
    :raises InvalidJobSpecError: an empty list, a source outside the domain, an unknown soil.
    """
    sources = [float(x) for x in params.get("sources") or []]
    mags = [float(m) for m in params.get("magnitudes") or []]
    soils = [str(s) for s in params.get("soils") or []]
    if not (sources and mags and soils):
        raise InvalidJobSpecError("sources, magnitudes and soils must each list at least one value")
    if any(not 0.0 < x < 1.0 for x in sources):
        raise InvalidJobSpecError(f"sources are fractions of the profile width, strictly between 0 and 1: {sources}")
    b = float(params.get("b_value", 1.0))
    nx, nz, dx = int(params.get("nx", 160)), int(params.get("nz", 80)), float(params.get("dx_m", 10.0))
    width, depth = nx * dx, nz * dx
    gr = [10.0 ** (-b * m) for m in mags]
    out = []
    for (i, x), (j, m), soil in itertools.product(enumerate(sources), enumerate(mags), soils):
        kernel = {"nx": nx, "nz": nz, "dx_m": dx, "steps": int(params.get("steps", 300)),
                  "sponge_cells": int(params.get("sponge_cells", 16)), "magnitude": m,
                  "source_x_m": round(x * width, 3), "progress_lines": 2, **_soil_params(soil, width, depth)}
        weight = (gr[j] / sum(gr)) / len(sources) / len(soils)
        out.append({"name": f"src{i + 1}-M{m:g}-{soil}", "source_x_m": kernel["source_x_m"], "magnitude": m,
                    "soil": soil, "weight": weight, "kernel_params": kernel})
    return out


def plan_ensemble(params: Mapping[str, Any], backend: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Operator arguments of every scenario run (rows for ``expand_kwargs``), validated first."""
    from airflow_provider_hpcai.kernel_params import validate

    ranks = int(params.get("ranks") or 1)
    rows = []
    for sc in scenarios(params):
        try:
            validate("seismic", sc["kernel_params"], ranks)
        except ValueError as err:
            raise InvalidJobSpecError(f"scenario {sc['name']}: {err}") from err
        rows.append({"kernel_params": sc["kernel_params"], "ranks": ranks, **backend})
    return rows


def _p_above(peaks: Any, levels: Any, sigma_ln: float) -> Any:
    """``P(motion > level)`` for each peak and level: a step (``sigma_ln = 0``) or lognormal scatter."""
    import numpy as np

    peaks = np.asarray(peaks, dtype=float)[..., None]
    levels = np.asarray(levels, dtype=float)
    if sigma_ln <= 0:
        return (peaks > levels).astype(float)
    from scipy.special import ndtr

    with np.errstate(divide="ignore"):
        z = (np.log(levels) - np.log(np.maximum(peaks, 1e-300))) / sigma_ln
    return np.where(peaks > 0, ndtr(-z), 0.0)


def exceedance_probability(peaks: Any, weights: Any, levels: Any, sigma_ln: float = 0.0) -> Any:
    """``P(motion > level)`` per site and level over weighted scenarios.

    :param peaks: ``(n_scenarios, n_sites)`` peak ground motion.
    :param weights: ``(n_scenarios,)`` non-negative weights (normalised here).
    :param levels: ``(n_levels,)`` ground-motion levels.
    :param sigma_ln: aleatory scatter of the motion around a scenario's peak (log units); 0: none,
        the probability is then the weighted share of scenarios above the level.
    :return: ``(n_sites, n_levels)``, non-increasing along the levels.
    """
    import numpy as np

    peaks = np.atleast_2d(np.asarray(peaks, dtype=float))
    w = np.asarray(weights, dtype=float)
    if w.shape != (peaks.shape[0],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights need one non-negative value per scenario, not all zero")
    return np.tensordot(w / w.sum(), _p_above(peaks, levels, sigma_ln), axes=(0, 0))


def annual_probability(p_event: Any, rate_per_year: float) -> Any:
    """Probability of at least one exceedance in a year, events arriving as a Poisson process."""
    import numpy as np

    return 1.0 - np.exp(-float(rate_per_year) * np.asarray(p_event, dtype=float))


def default_levels(lo: float, hi: float, n: int = 60) -> list[float]:
    """``n`` levels spaced evenly in log between ``lo`` and ``hi``."""
    lo, hi = max(lo, 1e-12), max(hi, lo * 10)
    return [lo * (hi / lo) ** (k / (n - 1)) for k in range(n)]


def scenario_exceedance(run_dir: str, levels: Sequence[float], level: float, sites: Sequence[int],
                        window: Sequence[int], sigma_ln: float) -> dict[str, Any]:
    """One scenario reduced on a Dask worker: ``P(> level)`` at the sites for every level, and over the map window.

    :param sites: receiver indices kept (outside the absorbing layers).
    :param window: ``(row0, row1, col0, col1)`` of the peak-motion map kept.
    """
    import numpy as np

    surface = np.load(os.path.join(run_dir, "pgv_surface.npy"))[list(sites)]
    r0, r1, c0, c1 = window
    field = np.asarray(np.load(os.path.join(run_dir, "pgv_map.npy"), mmap_mode="r")[r0:r1, c0:c1])
    return {"sites": _p_above(surface, levels, sigma_ln).astype(np.float32),
            "map": _p_above(field, [level], sigma_ln)[..., 0].astype(np.float32)}


def _surface_peaks(run_dir: str) -> Any:
    import numpy as np

    return np.load(os.path.join(run_dir, "pgv_surface.npy"))


def aggregate_hazard(client: Client, runs: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                     results_dir: str) -> dict[str, Any]:
    """Hazard curves per site and a risk map from the scenario runs, computed on Dask.

    Sites are the surface receivers outside the absorbing layers; the map covers the same width
    and the upper ``map_depth`` fraction of the cross-section (above the sources by default).
    Writes ``hazard.json``, ``hazard_curves.png`` and ``risk_map.png`` into ``results_dir``.

    :param client: the Dask client.
    :param runs: the scenario runs' results, in the order of :func:`scenarios`.
    :param params: the DAG params (the ensemble, ``events_per_year``, ``level``, ``sigma_ln``, ``map_depth``).
    :param results_dir: where to write.
    """
    import numpy as np

    from airflow_provider_hpcai.casestudies import plots

    ens = scenarios(params)
    runs = list(runs)
    if len(runs) != len(ens):
        raise InvalidJobSpecError(f"{len(runs)} scenario results for {len(ens)} scenarios: the ensemble changed")
    dirs = [str(r["output_dir"]) for r in runs]
    weights = np.array([sc["weight"] for sc in ens])
    nx, nz = int(params.get("nx", 160)), int(params.get("nz", 80))
    dx, sponge = float(params.get("dx_m", 10.0)), int(params.get("sponge_cells", 16))
    x_all = np.load(os.path.join(dirs[0], "receiver_x_m.npy"))
    keep = np.flatnonzero((x_all >= sponge * dx) & (x_all < (nx - sponge) * dx))
    x_m = x_all[keep]
    sigma = float(params.get("sigma_ln", 0.5))
    surface = np.array(client.gather(client.map(_surface_peaks, dirs, pure=False)))[:, keep]
    positive = surface[surface > 0]
    if not positive.size:
        raise InvalidJobSpecError("every scenario's surface motion is zero: check the sources and steps")
    spread = math.exp(3 * sigma)
    levels = default_levels(float(np.percentile(positive, 5)) / spread, float(positive.max()) * spread)
    level = params.get("level")
    if level is None:  # the weighted median of the sites' peaks: a relative "damaging" level
        order = np.argsort(surface.ravel())
        cum = np.cumsum(np.repeat(weights, surface.shape[1])[order])
        level = float(f"{float(surface.ravel()[order][np.searchsorted(cum, cum[-1] / 2)]):.2g}")
    depth_rows = max(1, round(float(params.get("map_depth", 0.5)) * nz))
    window = (0, min(depth_rows, nz - sponge), sponge, nx - sponge)
    parts = client.gather(client.map(scenario_exceedance, dirs, [levels] * len(dirs), [level] * len(dirs),
                                     [keep.tolist()] * len(dirs), [window] * len(dirs), [sigma] * len(dirs),
                                     pure=False))
    w = weights / weights.sum()
    p_sites = np.tensordot(w, np.array([p["sites"] for p in parts], dtype=float), axes=(0, 0))
    p_map = np.tensordot(w, np.array([p["map"] for p in parts], dtype=float), axes=(0, 0))
    rate = float(params.get("events_per_year", 0.05))
    width = nx * dx
    picks = sorted({int(np.argmin(np.abs(x_m - f * width))) for f in (0.15, 0.3, 0.5, 0.7, 0.85)})
    site_curves = {f"x={x_m[i]:.0f} m": annual_probability(p_sites[i], rate) for i in picks}
    p_level_sites = exceedance_probability(surface, weights, [level], sigma)[:, 0]
    worst = int(np.argmax(p_level_sites))
    result = {
        "scenarios": [{k: sc[k] for k in ("name", "source_x_m", "magnitude", "soil", "weight")} |
                      {"peak_surface": float(surface[i].max())} for i, sc in enumerate(ens)],
        "n_scenarios": len(ens), "n_sites": len(keep), "events_per_year": rate, "level": level,
        "sigma_ln": sigma, "levels": levels, "site_x_m": x_m, "p_exceed_level_sites": p_level_sites,
        "annual_p_exceed_level_sites": annual_probability(p_level_sites, rate),
        "worst_site_x_m": float(x_m[worst]), "worst_site_p": float(p_level_sites[worst]),
        "map_window": list(window), "map_mean_p": float(p_map.mean()), "map_cells": int(p_map.size),
        "dask_tasks": 2 * len(dirs), "curves": site_curves, "dask_usage": _usage(client),
    }
    result["plots"] = {
        "hazard_curves": plots.hazard_curves(levels, site_curves, level, rate,
                                             os.path.join(results_dir, "hazard_curves.png")),
        "risk_map": plots.risk_map(p_map, dx, sponge, level, x_m, p_level_sites, ens,
                                   os.path.join(results_dir, "risk_map.png")),
    }
    write_json(os.path.join(results_dir, "hazard.json"), result)
    summary = {k: v for k, v in result.items() if k not in ("levels", "site_x_m", "p_exceed_level_sites",
                                                            "annual_p_exceed_level_sites", "curves")}
    return clean(summary)


def _usage(client: Client) -> dict[str, Any] | None:
    """What the Dask workers used up to now (``None`` on a cluster this process did not start)."""
    from airflow_provider_hpcai.dask.usage import usage_of

    return usage_of(client)


def magnitude_weights(mags: Sequence[float], b: float = 1.0) -> list[float]:
    """Gutenberg-Richter weights ``10**(-b M)`` normalised to 1."""
    raw = [10.0 ** (-b * m) for m in mags]
    return [r / math.fsum(raw) for r in raw]
