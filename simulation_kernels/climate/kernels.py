"""The climate model's fused time step (numba, CPU).

One pass per step over the owned cells: flux-form first-order upwind advection by a
divergence-free wind (``u`` varies with the row only, ``v`` with the column only), explicit
diffusion, relaxation of temperature towards the surface, evaporation into sub-saturated air,
and condensation of supersaturated water into rain with latent heating. Column water ``W`` is
in mm; rain and evaporation are accumulated in mm, so ``sum(W) + sum(rain) - sum(evap)`` is
conserved to round-off, and so is ``sum(T + latent W) - sum(heating)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

__all__ = ["climate_step"]


@njit(parallel=True, cache=True)
def climate_step(
    T: np.ndarray,
    W: np.ndarray,
    Tn: np.ndarray,
    Wn: np.ndarray,
    cxp: np.ndarray,
    cxm: np.ndarray,
    cyp: np.ndarray,
    cym: np.ndarray,
    tsurf: np.ndarray,
    rain: np.ndarray,
    evap: np.ndarray,
    heat: np.ndarray,
    rate: np.ndarray,
    peak: np.ndarray,
    coef: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Advance ``T, W`` (halo 1, ghosts filled) into ``Tn, Wn`` and update the accumulators.

    :param cxp: per owned row, ``max(u, 0) dt / dx``; ``cxm``: ``min(u, 0) dt / dx``.
    :param cyp: per owned column, ``max(v, 0) dt / dy``; ``cym``: ``min(v, 0) dt / dy``.
    :param coef: ``[kx, ky, t0, w0, cc, latent, evap_per_step, cond_frac, relax_frac, mm_h_per_step]``.
    """
    kx = coef[0]
    ky = coef[1]
    t0 = coef[2]
    w0 = coef[3]
    cc = coef[4]
    latent = coef[5]
    evap_step = coef[6]
    cond_frac = coef[7]
    relax = coef[8]
    to_rate = coef[9]
    nr = T.shape[0] - 2
    nc = T.shape[1] - 2
    for j in prange(nr):
        tu = T[j]
        tm = T[j + 1]
        td = T[j + 2]
        wu = W[j]
        wm = W[j + 1]
        wd = W[j + 2]
        ap = cxp[j]
        am = cxm[j]
        jj = j + 1
        for i in range(nc):
            ii = i + 1
            bp = cyp[i]
            bm = cym[i]
            tc = tm[ii]
            t = (
                tc
                - ap * (tc - tm[i])
                - am * (tm[i + 2] - tc)
                - bp * (tc - tu[ii])
                - bm * (td[ii] - tc)
                + kx * ((tm[i] + tm[i + 2]) - 2.0 * tc)
                + ky * ((tu[ii] + td[ii]) - 2.0 * tc)
            )
            wc = wm[ii]
            w = (
                wc
                - ap * (wc - wm[i])
                - am * (wm[i + 2] - wc)
                - bp * (wc - wu[ii])
                - bm * (wd[ii] - wc)
                + kx * ((wm[i] + wm[i + 2]) - 2.0 * wc)
                + ky * ((wu[ii] + wd[ii]) - 2.0 * wc)
            )
            dts = (tsurf[jj, ii] - t) * relax
            t = t + dts
            heat[jj, ii] += dts
            sat = w0 * np.exp(cc * (t - t0))
            e = evap_step * max(0.0, 1.0 - w / sat)
            w = w + e
            t = t - latent * e
            evap[jj, ii] += e
            sat = w0 * np.exp(cc * (t - t0))
            c = max(0.0, w - sat) * cond_frac
            w = w - c
            t = t + latent * c
            rain[jj, ii] += c
            r = c * to_rate
            rate[jj, ii] = r
            peak[jj, ii] = max(peak[jj, ii], r)
            Tn[jj, ii] = t
            Wn[jj, ii] = w


def coefficients(p: dict[str, Any]) -> np.ndarray:
    """The ``coef`` vector of :func:`climate_step` from validated parameters."""
    dx = p["dx_km"] * 1000.0
    dt = p["dt_s"]
    k = p["diffusivity_m2_s"] * dt / (dx * dx)
    return np.array(
        [
            k,
            k,
            p["t0_k"],
            p["w0_mm"],
            p["cc_per_k"],
            p["latent_k_per_mm"],
            p["evaporation_mm_h"] * dt / 3600.0,
            min(1.0, dt / p["condensation_time_s"]),
            min(1.0, dt / p["surface_relax_time_s"]),
            3600.0 / dt,
        ],
        dtype=np.float64,
    )
