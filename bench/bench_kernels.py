"""Benchmark of the simulation kernels (not a test: prints figures, never fails on timing).

One thread (``NUMBA_NUM_THREADS=1``), arrays of 128 MiB or more. In one process:

1. numba triad ``a = b + s c`` (float32): the memory bandwidth, 12 bytes per element moved;
2. 5-point diffusion stencil (8 bytes per point: read ``u``, write ``out``) and 8th-order wave
   stencil (16 bytes per point: read ``u_prev``, ``u``, ``m``, write ``u_next``) as a fraction of
   that bandwidth bound, and in Gpoint/s. Triad and kernel runs alternate and the fraction is the
   median of the paired ratios (the machine is shared: bandwidth drifts between runs);
3. the numpy-slicing versions of the same two kernels (speed-up of numba over numpy);
4. Devito's 8th-order wave operator on the same grid, when ``import devito`` works (set
   ``DEVITO_PATH`` to a folder holding it to keep it out of the project's environment);
5. the seismic kernel under ``mpiexec -n 1`` and ``-n 2``: speed-up of the time loop
   (``summary.json["loop_s"]``, the slowest rank) and equality of the fields;
6. the line model: events/s and parts/s of a 3-station line.

Medians over repeats. Human lines, then one JSON line. Usage::

    NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_kernels.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["NUMBA_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np
from numba import njit

MIB = 1 << 20


@njit(cache=True)
def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: Any) -> None:  # pragma: no cover - numba
    for i in range(a.size):
        a[i] = b[i] + s * c[i]


def median_time(fn: Callable[[], None], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Triad:
    """The bandwidth probe, kept allocated so it can run side by side with each kernel."""

    def __init__(self, mib: int) -> None:
        self.n = mib * MIB // 4
        self.a = np.zeros(self.n, np.float32)
        self.b = np.ones(self.n, np.float32)
        self.c = np.full(self.n, 2.0, np.float32)
        self()

    def __call__(self) -> None:
        triad(self.a, self.b, self.c, np.float32(3.0))

    def bandwidth(self, seconds: float) -> float:
        return 12 * self.n / seconds


def side_by_side(probe: Triad, fn: Callable[[], None], nbytes: int, repeats: int) -> dict[str, float]:
    """Alternate triad and kernel runs; the fraction of the bound is the median of the paired ratios.

    Pairing keeps the ratio honest on a shared machine where the bandwidth drifts between runs.
    """
    fn()
    fracs, times, bws = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        probe()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        bw = probe.bandwidth(t1 - t0)
        fracs.append(nbytes / (t2 - t1) / bw)
        times.append(t2 - t1)
        bws.append(bw)
    return {
        "time": statistics.median(times),
        "fraction": statistics.median(fracs),
        "bw": statistics.median(bws),
    }


def bench_stencils(ny: int, nx: int, repeats: int, probe: Triad) -> dict[str, Any]:
    from simulation_kernels.stencils import (
        heat_step,
        heat_step_numpy,
        wave_coeffs,
        wave_step,
        wave_step_numpy,
    )

    pts = ny * nx
    res: dict[str, Any] = {"grid": [ny, nx], "array_mib": round(pts * 4 / MIB)}
    rng = np.random.default_rng(0)
    u = rng.random((ny + 2, nx + 2), dtype=np.float32)
    out = np.zeros_like(u)
    rx = np.float32(0.2)
    sb = side_by_side(probe, lambda: heat_step(u, out, rx, rx), 8 * pts, repeats)
    t = sb["time"]
    tn = median_time(lambda: heat_step_numpy(u, out, rx, rx), max(1, repeats // 2))
    res["diffusion"] = {
        "gpoint_s": pts / t / 1e9,
        "gb_s": 8 * pts / t / 1e9,
        "triad_gb_s": sb["bw"] / 1e9,
        "fraction_of_bound": sb["fraction"],
        "numpy_gpoint_s": pts / tn / 1e9,
        "numba_over_numpy": tn / t,
    }
    u = out = None  # free the diffusion arrays before allocating the wave ones
    h = 4
    u = rng.random((ny + 2 * h, nx + 2 * h), dtype=np.float32)
    up = rng.random((ny + 2 * h, nx + 2 * h), dtype=np.float32)
    m = np.full_like(u, 0.2)
    un = np.zeros_like(u)
    cs = wave_coeffs(np.float32)
    sb = side_by_side(probe, lambda: wave_step(up, u, m, un, *cs), 16 * pts, repeats)
    t = sb["time"]
    tn = median_time(lambda: wave_step_numpy(up, u, m, un), max(1, repeats // 2))
    res["wave"] = {
        "gpoint_s": pts / t / 1e9,
        "gb_s": 16 * pts / t / 1e9,
        "triad_gb_s": sb["bw"] / 1e9,
        "fraction_of_bound": sb["fraction"],
        "numpy_gpoint_s": pts / tn / 1e9,
        "numba_over_numpy": tn / t,
    }
    return res


def bench_devito(ny: int, nx: int, repeats: int, steps: int = 10) -> dict[str, Any]:
    extra = os.environ.get("DEVITO_PATH")
    if extra and extra not in sys.path:
        sys.path.append(extra)  # appended: never shadows the project's numpy
    os.environ.setdefault("DEVITO_LANGUAGE", "C")
    os.environ.setdefault("DEVITO_LOGGING", "WARNING")
    try:
        from devito import Eq, Function, Grid, Operator, TimeFunction
    except Exception as exc:  # any failure means "skip"
        return {"skipped": f"devito unavailable: {type(exc).__name__}: {exc}"[:200]}
    grid = Grid(shape=(ny, nx), extent=(ny * 10.0, nx * 10.0), dtype=np.float32)
    u = TimeFunction(name="u", grid=grid, time_order=2, space_order=8)
    c2 = Function(name="c2", grid=grid, space_order=0)
    c2.data[:] = 2000.0**2
    u.data[:] = np.random.default_rng(0).random(u.data.shape, dtype=np.float32) * 1e-3
    dt = 0.4 * 10.0 / 2000.0
    op = Operator([Eq(u.forward, 2 * u - u.backward + dt * dt * c2 * u.laplace)])
    t = median_time(lambda: op.apply(time_m=1, time_M=steps, dt=dt), repeats)
    return {"gpoint_s": ny * nx * steps / t / 1e9, "steps_per_call": steps}


def bench_mpi(size: int, steps: int, repeats: int) -> dict[str, Any]:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        return {"skipped": "no mpiexec next to the interpreter"}
    params = {"nx": size, "nz": size, "steps": steps, "peak_map": False, "progress_lines": 1}
    walls: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg.json"
        cfg.write_text(json.dumps(params))
        for rep in range(repeats):
            for ranks in (1, 2):
                out = Path(tmp) / f"o{ranks}_{rep}"
                cmd = [
                    str(mpiexec),
                    "-n",
                    str(ranks),
                    sys.executable,
                    "-m",
                    "mpi4py",
                    "-m",
                    "simulation_kernels.seismic",
                    "--config",
                    str(cfg),
                    "--output",
                    str(out),
                ]
                env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_NUM_THREADS="1")
                subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env=env, timeout=900)
                walls[ranks].append(json.loads((out / "summary.json").read_text())["loop_s"])
        diffs = [
            float(np.abs(np.load(Path(tmp) / f"o1_0/{n}") - np.load(Path(tmp) / f"o2_0/{n}")).max())
            for n in ("wavefield.npy", "seismograms.npy")
        ]
    w1, w2 = statistics.median(walls[1]), statistics.median(walls[2])
    return {
        "grid": [size, size],
        "steps": steps,
        "wall_1_s": w1,
        "wall_2_s": w2,
        "speedup": w1 / w2,
        "max_abs_diff": max(diffs),
    }


def bench_line(horizon: float, repeats: int) -> dict[str, Any]:
    from simulation_kernels.assembly_line.model import Line
    from simulation_kernels.params import validate

    p = validate("assembly_line", {"horizon": horizon, "warmup": 0.0, "max_events": 10**9})
    rates, parts = [], []
    for seed in range(repeats):
        t = time.perf_counter()
        r = Line(p, seed).run()
        dt = time.perf_counter() - t
        rates.append(r["events"] / dt)
        parts.append(r["parts"] / dt)
    return {"stations": 3, "events_per_s": statistics.median(rates), "parts_per_s": statistics.median(parts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run; figures measure the cache)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    mib = 16 if args.quick else 128
    ny, nx = (1024, 4096) if args.quick else (4096, 8192)
    res: dict[str, Any] = {"bench": "kernels", "threads": 1, "quick": args.quick}
    probe = Triad(mib)
    bw = probe.bandwidth(median_time(probe, args.repeats))
    res["triad_gb_s"] = bw / 1e9
    print(f"triad bandwidth (numba, 1 thread, 3 x {mib} MiB float32): {bw / 1e9:.1f} GB/s", flush=True)
    st = bench_stencils(ny, nx, args.repeats, probe)
    res.update(st)
    for name, target in (("diffusion", 0.5), ("wave", 0.4)):
        d = st[name]
        print(
            f"{name:9s} {ny}x{nx} float32: {d['gpoint_s']:.2f} Gpoint/s, {d['gb_s']:.1f} GB/s = "
            f"{100 * d['fraction_of_bound']:.0f}% of the triad bound measured alongside "
            f"({d['triad_gb_s']:.1f} GB/s; "
            f"target {100 * target:.0f}%); numpy "
            f"{d['numpy_gpoint_s']:.3f} Gpoint/s -> numba {d['numba_over_numpy']:.1f}x (target 5x)",
            flush=True,
        )
    dv = bench_devito(ny, nx, max(3, args.repeats // 2))
    res["devito_wave"] = dv
    if "skipped" in dv:
        print(f"devito    skipped ({dv['skipped']})", flush=True)
    else:
        dv["ours_over_devito"] = st["wave"]["gpoint_s"] / dv["gpoint_s"]
        print(
            f"devito    wave so8 {ny}x{nx}: {dv['gpoint_s']:.2f} Gpoint/s; ours / devito = "
            f"{dv['ours_over_devito']:.2f}",
            flush=True,
        )
    size, steps = (512, 50) if args.quick else (2048, 300)
    mp = bench_mpi(size, steps, 3)
    res["mpi_seismic"] = mp
    if "skipped" in mp:
        print(f"mpi       skipped ({mp['skipped']})", flush=True)
    else:
        print(
            f"mpi       seismic {size}x{size}, {steps} steps, loop: 1 rank {mp['wall_1_s']:.2f} s, 2 ranks "
            f"{mp['wall_2_s']:.2f} s -> speed-up {mp['speedup']:.2f}x; max |diff| {mp['max_abs_diff']:.1e}",
            flush=True,
        )
    ln = bench_line(20000.0 if args.quick else 200000.0, 3)
    res["line"] = ln
    print(
        f"line      3 stations: {ln['events_per_s'] / 1e3:.0f}k events/s (target 200k), "
        f"{ln['parts_per_s'] / 1e3:.0f}k parts/s (target 30k)",
        flush=True,
    )
    print(json.dumps(res, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
