"""2D acoustic wave propagation for seismic scenarios.

``u_tt = c^2 (u_xx + u_zz) + s(t) delta(x - xs)``, 8th order in space, leapfrog in time. Row 0 is
the surface. With ``boundary='absorbing'`` the top is a free surface (pressure zero beyond it)
and a sponge (``u_tt + 2 eta u_t``, quadratic profile) absorbs waves on the sides and bottom;
with ``boundary='periodic'`` the grid wraps around (used for exact tests).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from simulation_kernels.common.cli import RunContext
from simulation_kernels.common.config import write_json
from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.common.progress import ProgressReporter

__all__ = ["ricker", "run", "simulate", "source_scale", "sponge", "velocity_model"]

HALO = 4


def ricker(t: float, f0: float) -> float:
    """Ricker wavelet of peak frequency ``f0`` delayed by ``1.2 / f0``."""
    a = (math.pi * f0 * (t - 1.2 / f0)) ** 2
    return (1.0 - 2.0 * a) * math.exp(-a)


def source_scale(p: dict[str, Any]) -> float:
    """Amplitude factor: ``amplitude`` times ``10**(1.5 (M - 4))`` when a magnitude is given."""
    scale = p["amplitude"]
    if p["magnitude"] is not None:
        scale *= 10.0 ** (1.5 * (p["magnitude"] - 4.0))
    return scale


def velocity_model(p: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """P velocity (m/s) at the given global rows (depth) and columns."""
    dx = p["dx_m"]
    z = (rows.astype(np.float64) * dx)[:, None]
    x = (cols.astype(np.float64) * dx)[None, :]
    vp = np.full((rows.size, cols.size), p["vp_m_s"])
    if p["velocity_model"] == "layered":
        for top, v in p["layers"]:
            vp = np.where(z + 0 * x >= top, v, vp)
    elif p["velocity_model"] == "basin":
        half = p["basin_width_m"] / 2
        inside = ((x - p["basin_center_x_m"]) / half) ** 2 + (z / p["basin_depth_m"]) ** 2 < 1.0
        vp = np.where(inside, p["basin_vp_m_s"], vp)
    return vp


def sponge(p: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``eta dt`` on the sides and bottom (zero inside and on a periodic grid)."""
    nb = p["sponge_cells"]
    out = np.zeros((rows.size, cols.size))
    if p["boundary"] != "absorbing" or nb == 0:
        return out
    vmax = max(
        float(velocity_model(p, np.array([0, p["nz"] - 1]), np.array([0, p["nx"] - 1])).max()), p["vp_m_s"]
    )
    eta_max = 1.5 * vmax / (nb * p["dx_m"]) * math.log(1e3)
    dl = np.maximum(nb - cols, 0)
    dr = np.maximum(cols - (p["nx"] - 1 - nb), 0)
    db = np.maximum(rows - (p["nz"] - 1 - nb), 0)
    d = np.maximum(np.maximum(dl, dr)[None, :], db[:, None]) / nb
    return eta_max * d * d * p["dt_s"]


def _rects(p: dict[str, Any], dec: Decomposition) -> list[tuple[int, int, int, int]]:
    """Non-overlapping rectangles (local array indices) covering this rank's part of the sponge."""
    nb, nz, nx = p["sponge_cells"], p["nz"], p["nx"]
    if p["boundary"] != "absorbing" or nb == 0:
        return []
    regions = [(0, nz, 0, nb), (0, nz, nx - nb, nx), (nz - nb, nz, nb, nx - nb)]
    out = []
    for r0, r1, c0, c1 in regions:
        a0, a1 = max(r0, dec.row0), min(r1, dec.row0 + dec.nrows)
        b0, b1 = max(c0, dec.col0), min(c1, dec.col0 + dec.ncols)
        if a0 < a1 and b0 < b1:
            out.append(
                (a0 - dec.row0 + HALO, a1 - dec.row0 + HALO, b0 - dec.col0 + HALO, b1 - dec.col0 + HALO)
            )
    return out


def simulate(
    p: dict[str, Any],
    dec: Decomposition,
    ops: Any,
    *,
    progress: ProgressReporter | None = None,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run ``steps`` leapfrog steps; return this rank's fields (host arrays with ghosts) and receivers.

    :param p: validated parameters.
    :param dec: decomposition with halo 4 (periodic when ``boundary='periodic'``).
    :param ops: CPU or CUDA operations (:func:`simulation_kernels.engine.make_ops`).
    :param progress: reporter updated every step.
    :param initial: global ``(u_previous, u_now)`` fields, zero when ``None``.
    """
    from simulation_kernels.stencils import wave_coeffs

    dtype = np.dtype(p["precision"])
    t = dtype.type
    dt, dx = p["dt_s"], p["dx_m"]
    rows, cols = dec.local_rows(), dec.local_cols()
    vp = velocity_model(p, rows, cols)
    m_host = dec.allocate(dtype)
    dec.interior(m_host)[...] = (vp * dt / dx) ** 2
    up_h, u_h = dec.allocate(dtype), dec.allocate(dtype)
    if initial is not None:
        sl = (slice(dec.row0, dec.row0 + dec.nrows), slice(dec.col0, dec.col0 + dec.ncols))
        dec.interior(up_h)[...] = initial[0][sl]
        dec.interior(u_h)[...] = initial[1][sl]
    damp_h = dec.allocate(dtype)
    dec.interior(damp_h)[...] = sponge(p, rows, cols)
    rects = _rects(p, dec)
    zs, xs = round(p["source_z_m"] / dx), round(p["source_x_m"] / dx)
    scale = source_scale(p)
    zr = round(p["receiver_depth_m"] / dx)
    rec_cols = np.arange(0, p["nx"], p["receiver_spacing"])
    mine = (
        rec_cols[(rec_cols >= dec.col0) & (rec_cols < dec.col0 + dec.ncols)]
        if dec.owns(zr, dec.col0)
        else np.zeros(0, dtype=np.int64)
    )
    rj = np.full(mine.size, zr - dec.row0 + HALO, dtype=np.int64)
    ri = (mine - dec.col0 + HALO).astype(np.int64)
    seis_h = np.zeros((mine.size, p["steps"]), dtype=dtype)
    up, u, un, m = ops.asarray(up_h), ops.asarray(u_h), ops.asarray(dec.allocate(dtype)), ops.asarray(m_host)
    damp, seis = ops.asarray(damp_h), ops.asarray(seis_h)
    rj_d, ri_d = ops.asarray(rj), ops.asarray(ri)
    peak = ops.asarray(dec.allocate(dtype)) if p["peak_map"] else None
    coeffs = wave_coeffs(dtype)
    inv2dt = t(1.0 / (2.0 * dt))
    src_here = dec.owns(zs, xs) and scale != 0.0
    msrc = float((vp[zs - dec.row0, xs - dec.col0] * dt / dx) ** 2) if src_here else 0.0
    ops.sync()
    t_loop = time.perf_counter()
    for n in range(p["steps"]):
        ops.exchange(u)
        ops.wave_step(up, u, m, un, peak, inv2dt, coeffs)
        ops.damping(un, up, damp, rects)
        if src_here:
            ops.add_point(
                un,
                zs - dec.row0 + HALO,
                xs - dec.col0 + HALO,
                t(scale * ricker((n + 1) * dt, p["f0_hz"]) * msrc),
            )
        ops.record(un, rj_d, ri_d, seis, n)
        up, u, un = u, un, up
        if progress is not None:
            progress.update(n + 1)
    ops.sync()
    loop_s = time.perf_counter() - t_loop
    return {
        "loop_s": loop_s,
        "u": ops.to_host(u),
        "u_prev": ops.to_host(up),
        "peak": None if peak is None else ops.to_host(peak),
        "vp": vp,
        "receivers": (mine, ops.to_host(seis)),
    }


def run(p: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """CLI entry: simulate, gather on rank 0, write seismograms and maps; return the summary."""
    from simulation_kernels.engine import make_ops
    from simulation_kernels.gpu import resolve_device

    device = resolve_device(p["device"], ctx.size)
    dec = Decomposition(
        p["nz"],
        p["nx"],
        tuple(p["decomposition"]),
        HALO,  # type: ignore[arg-type]
        p["boundary"] == "periodic",
        ctx.comm,
    )
    progress = ProgressReporter(p["steps"], lines=p["progress_lines"], enabled=ctx.is_root)
    out = simulate(p, dec, make_ops(device, dec), progress=progress)
    loop_s = dec.allreduce(out["loop_s"], "max")
    wavefield = dec.gather(out["u"])
    pgv_map = dec.gather(out["peak"]) if out["peak"] is not None else None
    vel = dec.allocate(np.float64)
    dec.interior(vel)[...] = out["vp"]
    vp_full = dec.gather(vel)
    parts = dec.gather_objects(out["receivers"])
    if not ctx.is_root:
        return {}
    assert parts is not None and wavefield is not None and vp_full is not None
    cols = np.concatenate([c for c, _ in parts])
    order = np.argsort(cols)
    seis = np.concatenate([s for _, s in parts], axis=0)[order]
    rec_x = cols[order] * p["dx_m"]
    dt = p["dt_s"]
    vel_rec = (
        np.abs(seis[:, 2:].astype(np.float64) - seis[:, :-2]) / (2 * dt)
        if seis.shape[1] > 2
        else np.zeros_like(seis, dtype=np.float64)
    )
    pgv_surface = vel_rec.max(axis=1) if vel_rec.size else np.zeros(seis.shape[0])
    np.save(ctx.output / "seismograms.npy", seis)
    np.save(ctx.output / "receiver_x_m.npy", rec_x)
    np.save(ctx.output / "pgv_surface.npy", pgv_surface)
    np.save(ctx.output / "wavefield.npy", wavefield)
    np.save(ctx.output / "velocity.npy", vp_full)
    outputs = ["seismograms.npy", "receiver_x_m.npy", "pgv_surface.npy", "wavefield.npy", "velocity.npy"]
    if pgv_map is not None:
        np.save(ctx.output / "pgv_map.npy", pgv_map)
        outputs.append("pgv_map.npy")
    imax = int(np.argmax(pgv_surface)) if pgv_surface.size else 0
    write_json(
        ctx.output / "receivers.json", {"x_m": rec_x, "depth_m": p["receiver_depth_m"], "pgv": pgv_surface}
    )
    return {
        "device": device,
        "decomposition": p["decomposition"],
        "steps": p["steps"],
        "dt_s": dt,
        "simulated_s": p["steps"] * dt,
        "loop_s": loop_s,
        "gpoint_s": p["nx"] * p["nz"] * p["steps"] / loop_s / 1e9 if loop_s > 0 else None,
        "grid": [p["nz"], p["nx"]],
        "courant": float(vp_full.max() * dt / p["dx_m"]),
        "source_scale": source_scale(p),
        "n_receivers": int(seis.shape[0]),
        "pgv_surface_max": float(pgv_surface.max()) if pgv_surface.size else 0.0,
        "pgv_surface_max_x_m": float(rec_x[imax]) if rec_x.size else 0.0,
        "pgv_surface_mean": float(pgv_surface.mean()) if pgv_surface.size else 0.0,
        "pgv_domain_max": float(pgv_map.max()) if pgv_map is not None else None,
        "wavefield_max_abs": float(np.abs(wavefield).max()),
        "finite": bool(np.isfinite(seis).all() and np.isfinite(wavefield).all()),
        "outputs": outputs + ["receivers.json"],
    }
