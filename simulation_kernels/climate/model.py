"""The regional climate model: set-up, time loop, budgets, outputs and storm list."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from simulation_kernels.common.cli import RunContext
from simulation_kernels.common.config import write_json
from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.common.progress import ProgressReporter

__all__ = ["FIELDS", "initial_state", "run", "simulate", "wind"]

#: fields written by :func:`run` (``<name>.npy``).
FIELDS = (
    "rain_accum",
    "rain_peak_rate",
    "rain_rate",
    "temperature",
    "moisture",
    "evaporation",
    "storm_labels",
)


def wind(p: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """West-east wind per row and south-north wind per column (m/s); divergence-free by construction."""
    u = p["wind_u_m_s"] + p["shear_u_m_s"] * np.sin(2 * np.pi * rows / p["ny"])
    v = p["wind_v_m_s"] + p["shear_v_m_s"] * np.sin(2 * np.pi * cols / p["nx"])
    return u, v


def _features(p: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` feature centres (row, col) in grid units."""
    return rng.uniform(0, 1, size=(n, 2)) * np.array([p["ny"], p["nx"]], dtype=np.float64)


def _bump(
    p: dict[str, Any],
    centres: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Sum of periodic Gaussians of radius ``feature_radius_km`` at ``centres`` on the local block."""
    rad = p["feature_radius_km"] / p["dx_km"]
    out = np.zeros((rows.size, cols.size))
    for k, (cr, cc) in enumerate(centres):
        dr = np.abs(rows[:, None] - cr)
        dr = np.minimum(dr, p["ny"] - dr)
        dc = np.abs(cols[None, :] - cc)
        dc = np.minimum(dc, p["nx"] - dc)
        out += (1.0 if weights is None else weights[k]) * np.exp(-(dr * dr + dc * dc) / (2 * rad * rad))
    return out


def initial_state(p: dict[str, Any], dec: Decomposition) -> dict[str, np.ndarray]:
    """Initial temperature, water and surface temperature on this rank's block (ghosts zero).

    Feature positions are drawn from ``seed`` identically on every rank, then evaluated at
    the owned cells, so the global state does not depend on the decomposition.
    """
    rng = np.random.default_rng(p["seed"])
    hot = _features(p, p["hotspots"], rng)
    moist = _features(p, p["moist_blobs"], rng)
    rows = dec.local_rows().astype(np.float64)
    cols = dec.local_cols().astype(np.float64)
    signs = rng.choice(np.array([-1.0, 1.0]), size=p["hotspots"])
    base = p["t0_k"] + np.cos(2 * np.pi * rows / p["ny"])[:, None] + np.zeros((1, cols.size))
    tsurf = base + p["hotspot_k"] * _bump(p, hot, rows, cols, signs)
    rh = p["initial_rh"] + (p["blob_rh"] - p["initial_rh"]) * np.minimum(1.0, _bump(p, moist, rows, cols))
    sat = p["w0_mm"] * np.exp(p["cc_per_k"] * (base - p["t0_k"]))
    state = {name: dec.allocate() for name in ("T", "W", "tsurf")}
    dec.interior(state["T"])[...] = base
    dec.interior(state["W"])[...] = rh * sat
    dec.interior(state["tsurf"])[...] = tsurf
    return state


def simulate(
    p: dict[str, Any],
    dec: Decomposition,
    ops: Any,
    *,
    progress: ProgressReporter | None = None,
    state: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run ``steps`` steps and return the local fields (host arrays with ghosts) and budgets.

    :param p: validated parameters (:func:`simulation_kernels.params.validate`).
    :param dec: decomposition with halo 1, periodic.
    :param ops: :class:`~simulation_kernels.engine.CpuOps` or :class:`~simulation_kernels.gpu.CudaOps`.
    :param progress: reporter updated every step.
    :param state: initial ``T``, ``W``, ``tsurf`` (from :func:`initial_state` when ``None``).
    """
    from simulation_kernels.climate.kernels import coefficients

    st = initial_state(p, dec) if state is None else state
    dt, dx = p["dt_s"], p["dx_km"] * 1000.0
    u, v = wind(p, dec.local_rows().astype(np.float64), dec.local_cols().astype(np.float64))
    cx, cy = u * dt / dx, v * dt / dx
    winds = [np.maximum(cx, 0.0), np.minimum(cx, 0.0), np.maximum(cy, 0.0), np.minimum(cy, 0.0)]
    water0 = dec.allreduce(float(dec.interior(st["W"]).sum()))
    energy0 = dec.allreduce(
        float((dec.interior(st["T"]) + p["latent_k_per_mm"] * dec.interior(st["W"])).sum())
    )
    T, W = ops.asarray(st["T"]), ops.asarray(st["W"])
    Tn, Wn = ops.asarray(st["T"].copy()), ops.asarray(st["W"].copy())
    acc = {name: ops.asarray(dec.allocate()) for name in ("rain", "evap", "heat", "rate", "peak")}
    coef = ops.asarray(coefficients(p))
    winds_d = [ops.asarray(w) for w in winds]
    tsurf = ops.asarray(st["tsurf"])
    ops.sync()
    t_loop = time.perf_counter()
    for n in range(p["steps"]):
        ops.exchange(T)
        ops.exchange(W)
        ops.climate_step(
            T,
            W,
            Tn,
            Wn,
            *winds_d,
            tsurf,
            acc["rain"],
            acc["evap"],
            acc["heat"],
            acc["rate"],
            acc["peak"],
            coef,
        )
        T, Tn = Tn, T
        W, Wn = Wn, W
        if progress is not None:
            progress.update(n + 1)
    ops.sync()
    loop_s = dec.allreduce(time.perf_counter() - t_loop, "max")
    out = {"T": ops.to_host(T), "W": ops.to_host(W), **{k: ops.to_host(a) for k, a in acc.items()}}
    inner = {k: dec.interior(a) for k, a in out.items()}
    water1 = dec.allreduce(float(inner["W"].sum() + inner["rain"].sum() - inner["evap"].sum()))
    energy1 = dec.allreduce(
        float((inner["T"] + p["latent_k_per_mm"] * inner["W"]).sum() - inner["heat"].sum())
    )
    out["loop_s"] = loop_s
    out["budget"] = {
        "water_initial_mm": water0,
        "water_final_mm": water1,
        "water_relative_error": abs(water1 - water0) / abs(water0) if water0 else 0.0,
        "energy_initial": energy0,
        "energy_final": energy1,
        "energy_relative_error": abs(energy1 - energy0) / abs(energy0) if energy0 else 0.0,
        "rain_total_mm": dec.allreduce(float(inner["rain"].sum())),
        "evaporation_total_mm": dec.allreduce(float(inner["evap"].sum())),
    }
    return out


def run(p: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """CLI entry: simulate, gather on rank 0, detect storms, write fields; return the summary."""
    from simulation_kernels.climate.storms import detect_storms
    from simulation_kernels.engine import make_ops
    from simulation_kernels.gpu import resolve_device

    device = resolve_device(p["device"], ctx.size)
    dec = Decomposition(p["ny"], p["nx"], tuple(p["decomposition"]), 1, True, ctx.comm)  # type: ignore[arg-type]
    progress = ProgressReporter(p["steps"], lines=p["progress_lines"], enabled=ctx.is_root)
    out = simulate(p, dec, make_ops(device, dec), progress=progress)
    names = {
        "rain_accum": "rain",
        "rain_peak_rate": "peak",
        "rain_rate": "rate",
        "temperature": "T",
        "moisture": "W",
        "evaporation": "evap",
    }
    full = {name: dec.gather(out[key]) for name, key in names.items()}
    if not ctx.is_root:
        return {}
    storms, labels = detect_storms(
        full["rain_peak_rate"],
        full["rain_accum"],
        threshold=p["storm_threshold_mm_h"],
        min_cells=p["storm_min_cells"],
        max_storms=p["max_storms"],
        dx_km=p["dx_km"],
    )
    full["storm_labels"] = labels
    for name, arr in full.items():
        np.save(ctx.output / f"{name}.npy", arr)
    write_json(ctx.output / "storms.json", {"storms": storms})
    hours = p["steps"] * p["dt_s"] / 3600.0
    return {
        "device": device,
        "decomposition": p["decomposition"],
        "steps": p["steps"],
        "dt_s": p["dt_s"],
        "simulated_hours": hours,
        "loop_s": out["loop_s"],
        "grid": [p["ny"], p["nx"]],
        "dx_km": p["dx_km"],
        "storm_field": "rain_peak_rate",
        "storm_threshold_mm_h": p["storm_threshold_mm_h"],
        "n_storms": len(storms),
        "storms": storms,
        "budget": out["budget"],
        "rain_max_accum_mm": float(full["rain_accum"].max()),
        "rain_mean_accum_mm": float(full["rain_accum"].mean()),
        "finite": bool(all(math.isfinite(float(a.sum())) for a in full.values())),
        "outputs": sorted(f"{n}.npy" for n in full) + ["storms.json"],
    }
