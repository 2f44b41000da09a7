"""The case studies' figures (matplotlib, Agg backend, imported inside each function).

Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "hazard_curves",
    "predicted_vs_actual",
    "rainfall_map",
    "risk_map",
    "storm_panels",
    "throughput_vs_buffer",
    "workers_over_time",
]

_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": _DPI})
    return plt


def _save(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def rainfall_map(rain_mm: Any, labels: Any, storms: Sequence[Mapping[str, Any]], dx_km: float, path: str) -> str:
    """Accumulated rain with each storm cell outlined and numbered (at its wettest cell)."""
    import numpy as np

    plt = _pyplot()
    ny, nx = rain_mm.shape
    extent = (0, nx * dx_km, 0, ny * dx_km)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    im = ax.imshow(rain_mm, origin="lower", extent=extent, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="accumulated rain (mm)", shrink=0.85)
    if len(storms):
        ax.contour(np.asarray(labels) > 0, levels=[0.5], colors="#d62728", linewidths=1.0, extent=extent,
                   origin="lower")
        for s in storms:
            inside = np.where(np.asarray(labels) == int(s["id"]), rain_mm, -1.0)
            row, col = np.unravel_index(int(np.argmax(inside)), inside.shape)
            x = min(max(col + 0.5, 3.0), nx - 3.0) * dx_km  # keep the number inside the frame
            y = min(max(row + 0.5, 3.0), ny - 3.0) * dx_km
            ax.text(x, y, str(s["id"]), color="#d62728", fontsize=9, fontweight="bold", ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    title = f"{len(storms)} storm cell(s) detected" if len(storms) else "no storm cell detected"
    ax.set(title=f"Rainfall field: {title}", xlabel="x (km)", ylabel="y (km)")
    return _save(fig, path)


def storm_panels(refined: Sequence[tuple[int, str]], analyses: Mapping[int, Mapping[str, Any]], path: str,
                 limit: int = 6) -> str:
    """The refined rain window of the wettest storms, one panel each."""
    import numpy as np

    plt = _pyplot()
    shown = list(refined)[:limit]
    cols = min(3, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    for ax, (sid, npy) in zip(axes.ravel(), shown):
        a = analyses[sid]
        field = np.load(npy)
        km = float(a.get("cell_km2_refined", 1.0)) ** 0.5
        im = ax.imshow(field, origin="lower", cmap="YlGnBu", extent=(0, field.shape[1] * km, 0, field.shape[0] * km))
        fig.colorbar(im, ax=ax, shrink=0.8, label="mm")
        ax.set_title(f"storm {sid}: {a['rain_volume_m3_refined'] / 1e9:.3g} km³, max {a['max_accum_mm_refined']:.0f} mm\n"
                     f"x{a['refine']} refined", fontsize=8.5)
        ax.set_xlabel("km")
    fig.suptitle("High-resolution rainfall per storm (one mapped task each)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def hazard_curves(levels: Sequence[float], curves: Mapping[str, Any], level: float, rate: float, path: str) -> str:
    """Annual probability of exceedance against ground-motion level, one curve per site."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    import numpy as np

    top = 0.0
    for (name, curve), style in zip(curves.items(), ("-", "--", "-.", ":", "-")):
        curve = np.asarray(curve, dtype=float)
        top = max(top, float(curve.max()))
        ax.plot(levels, np.where(curve > 0, curve, np.nan), linestyle=style, linewidth=1.6, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(max(top * 1e-4, 1e-8), top * 1.6)
    ax.axvline(level, color="#999", linewidth=0.8)
    ax.text(level, top * 1.4, " risk-map level", color="#666", va="top", fontsize=8)
    ax.set(xlabel="peak ground motion (relative units)", ylabel="annual probability of exceedance",
           title=f"Hazard curves at surface sites ({rate:g} events/year)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(title="site", fontsize=8)
    return _save(fig, path)


def risk_map(p_map: Any, dx_m: float, sponge: int, level: float, site_x_m: Any, p_sites: Any,
             scenarios: Sequence[Mapping[str, Any]], path: str) -> str:
    """Probability of exceeding ``level`` over the cross-section, with the surface profile above."""
    import numpy as np

    plt = _pyplot()
    nz, nx = p_map.shape
    x0 = sponge * dx_m
    fig, (top, ax) = plt.subplots(2, 1, figsize=(7.0, 5.2), gridspec_kw={"height_ratios": [1, 2.2]}, sharex=True)
    top.plot(site_x_m, p_sites, color="#d62728", linewidth=1.6)
    top.set(ylabel="P(exceed) per event", ylim=(0, 1.05),
            title=f"Seismic risk: P(peak motion > {level:g}) per event, ensemble of {len(scenarios)} scenarios")
    for x in sorted({float(s["source_x_m"]) for s in scenarios}):
        top.axvline(x, color="#555", linestyle=":", linewidth=0.9)
    top.text(0.01, 0.9, "dotted: epicentres", transform=top.transAxes, fontsize=8, color="#555")
    im = ax.imshow(p_map, cmap="magma_r", vmin=0, vmax=1, aspect="auto", interpolation="bilinear",
                   extent=(x0, x0 + nx * dx_m, nz * dx_m, 0))
    for sc in scenarios:
        kp = sc.get("kernel_params") or {}
        if kp.get("velocity_model") == "basin":  # outline the soft basin
            t = np.linspace(0, np.pi, 60)
            cx = kp.get("basin_center_x_m") or (kp["nx"] * kp["dx_m"] / 2)
            ax.plot(cx + kp["basin_width_m"] / 2 * np.cos(t), kp["basin_depth_m"] * np.sin(t), color="#2ca02c",
                    linewidth=1.2, linestyle="--", label="basin (basin soil model)")
            ax.legend(loc="lower right", fontsize=8)
            break
    fig.colorbar(im, ax=[top, ax], label="probability of exceedance", shrink=0.8)
    ax.set(xlabel="x along the profile (m)", ylabel="depth (m)")
    ax.set_xlim(x0, x0 + nx * dx_m)
    return _save(fig, path)


def throughput_vs_buffer(rows: Sequence[Mapping[str, Any]], surrogate: Mapping[str, Any], rec: Mapping[str, Any],
                         path: str, *, predict: Callable[..., Mapping[str, Any]]) -> str:
    """Throughput and energy per unit against buffer size: sweep (points, 95 % CI) and surrogate (lines).

    :param predict: the surrogate's prediction, ``predict(surrogate, scenario, buffers, staffs)``
        (the case study's own function, passed in so this module stays below it).
    """
    import numpy as np

    plt = _pyplot()
    names = [n for n in surrogate["models"] if any(r["scenario"] == n for r in rows)]
    staffs = sorted({r["staff"] for r in rows})
    buffers = sorted({r["buffer"] for r in rows})
    grid = np.arange(min(buffers), max(buffers) + 1)
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(staffs)))
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 5.6), squeeze=False, sharex=True)
    for j, name in enumerate(names):
        for metric, i, scale, label in (("throughput", 0, 60.0, "throughput (units/h)"),
                                        ("energy_per_unit_kwh", 1, 1.0, "energy per unit (kWh)")):
            ax = axes[i, j]
            for color, staff in zip(colors, staffs):
                pts = [r for r in rows if r["scenario"] == name and r["staff"] == staff]
                ax.errorbar([r["buffer"] for r in pts], [scale * r[metric] for r in pts],
                            yerr=[scale * r[f"{metric}_ci95"] for r in pts], fmt="o", ms=3.5, color=color,
                            capsize=2, label=f"crew {staff}")
                ax.plot(grid, scale * predict(surrogate, name, grid, np.full(grid.size, staff))[metric],
                        color=color, linewidth=1.2)
            pred = rec["predicted"].get(name)
            if pred:
                ax.plot([rec["buffer"]], [scale * pred[metric]], marker="*", ms=13, color="#d62728",
                        linestyle="none", label="recommended")
            r2 = surrogate["models"][name][metric]["r2"]
            ax.text(0.97, 0.04, f"surrogate R²={r2:.3f}", transform=ax.transAxes, ha="right", fontsize=7.5,
                    color="#555")
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(name.replace("_", " "))
            else:
                ax.set_xlabel("buffer size (slots per station)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.03))
    fig.suptitle(f"Sweep (points, 95% CI) and surrogate (lines); recommended: buffer {rec['buffer']}, "
                 f"crew {rec['staff']}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def predicted_vs_actual(panels: Sequence[Mapping[str, Any]], path: str) -> str:
    """The advisor's predictions at submission against what the jobs used, one panel per target.

    Each panel: ``{"title", "unit", "scale", "groups": [{"label", "actual", "predicted", "requested"}]}``.
    """
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.4), squeeze=False)
    styles = [("#9ecae1", "o", 10), ("#d62728", "D", 26), ("#2ca02c", "s", 20)]
    for ax, panel in zip(axes[0], panels):
        lo, hi = np.inf, 0.0
        for group, (color, marker, size) in zip(panel["groups"], styles):
            a = np.asarray(group["actual"], float) / panel["scale"]
            p = np.asarray(group["predicted"], float) / panel["scale"]
            if not a.size:
                continue
            ax.scatter(a, p, s=size, c=color, marker=marker, alpha=0.75, edgecolors="none", label=group["label"])
            lo, hi = min(lo, a.min(), p.min()), max(hi, a.max(), p.max())
        if np.isfinite(lo) and hi > 0:
            lo = max(lo * 0.7, 1e-3)
            ax.plot([lo, hi * 1.3], [lo, hi * 1.3], color="#444", linewidth=0.8, label="limit = used")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel=f"used ({panel['unit']})", ylabel=f"advised limit ({panel['unit']})", title=panel["title"])
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def workers_over_time(series: Mapping[str, Sequence[tuple[float, int]]], path: str, *,
                      title: str = "Dask workers over time") -> str:
    """Step curves of running workers, one per cluster (e.g. ``{"fixed (3 jobs)": ..., "adaptive 1-3": ...}``).

    :param series: label -> ``(seconds, workers)`` points (``WorkerTimeline.series()``); the area
        under each curve is its worker-time, given in the legend in worker-hours.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    top = 1
    for label, points in series.items():
        xs = [float(t) for t, _ in points]
        ys = [int(n) for _, n in points]
        hours = sum((xs[i + 1] - xs[i]) * ys[i] for i in range(len(xs) - 1)) / 3600.0
        ax.step(xs, ys, where="post", label=f"{label}: {hours:.4f} worker-h")
        top = max([top, *ys])
    ax.set_xlabel("seconds since the cluster started")
    ax.set_ylabel("workers running")
    ax.set_ylim(0, top + 0.5)
    ax.set_yticks(range(top + 1))
    ax.set_title(title)
    ax.legend(loc="lower center", frameon=False)
    return _save(fig, path)
