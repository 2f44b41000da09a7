"""Known answers of the stencil kernels: exact discrete decay, frequency and energy."""

from __future__ import annotations

import numpy as np
import pytest

from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.stencils import (
    heat_decay_factor,
    heat_step,
    heat_step_numpy,
    wave_coeffs,
    wave_mode_cos,
    wave_step,
    wave_step_numpy,
    wave_step_peak,
)


def _mode(ny: int, nx: int, ky: int, kx: int, h: int) -> np.ndarray:
    j = np.arange(ny)[:, None]
    i = np.arange(nx)[None, :]
    u = np.zeros((ny + 2 * h, nx + 2 * h))
    u[h:-h, h:-h] = np.sin(2 * np.pi * kx * i / nx + 0.3) * np.sin(2 * np.pi * ky * j / ny + 0.1)
    return u


@pytest.mark.parametrize(("kx", "ky"), [(1, 1), (3, 2), (8, 0)])
def test_heat_sine_mode_decays_by_the_exact_discrete_factor(kx: int, ky: int) -> None:
    ny, nx, rx, ry, steps = 24, 32, 0.2, 0.15, 50
    dec = Decomposition(ny, nx, (1, 1), 1, True)
    u = _mode(ny, nx, ky, kx, 1)
    start = dec.interior(u).copy()
    out = np.zeros_like(u)
    for _ in range(steps):
        dec.exchange(u)
        heat_step(u, out, rx, ry)
        u, out = out, u
    g = heat_decay_factor(rx, ry, kx, ky, nx, ny)
    np.testing.assert_allclose(dec.interior(u), g**steps * start, atol=1e-13)
    assert g**steps < 0.999  # the mode really decays


def test_heat_numba_and_numpy_agree() -> None:
    rng = np.random.default_rng(1)
    u = rng.random((18, 27)).astype(np.float32)
    a, b = np.zeros_like(u), np.zeros_like(u)
    heat_step(u, a, np.float32(0.2), np.float32(0.1))
    heat_step_numpy(u, b, np.float32(0.2), np.float32(0.1))
    # to round-off: LLVM may fuse multiply-adds that numpy rounds separately
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_wave_numba_and_numpy_agree_and_peak_variant_matches() -> None:
    rng = np.random.default_rng(2)
    u, up = rng.random((30, 41)).astype(np.float32), rng.random((30, 41)).astype(np.float32)
    m = np.full_like(u, 0.2)
    a, b, c = np.zeros_like(u), np.zeros_like(u), np.zeros_like(u)
    peak = np.zeros_like(u)
    wave_step(up, u, m, a, *wave_coeffs(np.float32))
    wave_step_numpy(up, u, m, b)
    wave_step_peak(up, u, m, c, peak, np.float32(0.5), *wave_coeffs(np.float32))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(peak[4:-4, 4:-4], np.abs(a - up)[4:-4, 4:-4] * 0.5, rtol=1e-5, atol=1e-6)
    assert np.all(a[:4] == 0) and np.all(a[:, -4:] == 0)  # ghosts untouched


def _run_wave(u0: np.ndarray, u1: np.ndarray, courant2: float, steps: int) -> list[np.ndarray]:
    ny, nx = u0.shape[0] - 8, u0.shape[1] - 8
    dec = Decomposition(ny, nx, (1, 1), 4, True)
    up, u, un = u0.copy(), u1.copy(), np.zeros_like(u0)
    m = np.full_like(u0, courant2)
    states = [u.copy()]
    for _ in range(steps):
        dec.exchange(u)
        wave_step(up, u, m, un, *wave_coeffs(np.float64))
        up, u, un = u, un, up
        states.append(u.copy())
    return states


def test_standing_wave_oscillates_at_the_exact_discrete_frequency() -> None:
    ny, nx, kx, ky, steps = 32, 40, 3, 2, 120
    courant2 = 0.5**2  # c dt / dx = 0.5 < 0.5546
    mode = _mode(ny, nx, ky, kx, 4)
    cos_w = wave_mode_cos(courant2, kx, ky, nx, ny)
    omega = np.arccos(cos_w)
    states = _run_wave(mode * np.cos(-omega), mode, courant2, steps)  # u(-dt), u(0)
    for n in (1, 17, 60, steps):
        np.testing.assert_allclose(states[n][4:-4, 4:-4], np.cos(omega * n) * mode[4:-4, 4:-4], atol=1e-10)
    # the continuous frequency would be visibly wrong after 120 steps: the check is sharp
    k2 = (2 * np.pi * kx / nx) ** 2 + (2 * np.pi * ky / ny) ** 2
    assert abs(np.cos(np.sqrt(courant2 * k2) * steps) - np.cos(omega * steps)) > 1e-6


def test_leapfrog_conserves_the_discrete_energy() -> None:
    ny, nx, courant2 = 24, 28, 0.3**2
    rng = np.random.default_rng(3)
    u0 = np.zeros((ny + 8, nx + 8))
    u0[4:-4, 4:-4] = rng.standard_normal((ny, nx))
    u1 = u0.copy()
    u1[4:-4, 4:-4] += 0.01 * rng.standard_normal((ny, nx))
    states = _run_wave(u0, u1, courant2, 200)
    dec = Decomposition(ny, nx, (1, 1), 4, True)
    zero = np.zeros_like(u0)

    def lap(u: np.ndarray) -> np.ndarray:
        # L u = (un - 2u + up) / m with up = 0: one stencil application
        v, out = u.copy(), np.zeros_like(u)
        dec.exchange(v)
        wave_step(zero, v, np.ones_like(u), out, *wave_coeffs(np.float64))
        return (out - 2 * v)[4:-4, 4:-4]

    def energy(a: np.ndarray, b: np.ndarray) -> float:
        return float(((b - a)[4:-4, 4:-4] ** 2).sum() - courant2 * (b[4:-4, 4:-4] * lap(a)).sum())

    e = [energy(states[n], states[n + 1]) for n in range(0, 200, 20)]
    assert e[0] > 0
    np.testing.assert_allclose(e, e[0], rtol=1e-10)
