"""Parameter specifications and validation for every simulation kernel.

Pure Python on purpose: no numpy, numba or mpi4py import, so the provider's
``SimulationOperator`` can import this module at execute time and refuse a bad
configuration before anything is submitted to a cluster.

Each kernel has a table of :class:`Param` entries (type, default, bounds, choices,
description). :func:`validate` fills defaults, checks types and ranges, and runs the
kernel's cross-field checks (CFL stability, rank counts that divide the grid).
:func:`schema` turns a table into a JSON-Schema for UI forms.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from .specs import (
    ASSEMBLY_LINE,
    CLIMATE,
    KERNELS,
    SEISMIC,
    SPECS,
    STATION,
    WAVE8_COEFFS,
    Param,
)

__all__ = [
    "ASSEMBLY_LINE",
    "CLIMATE",
    "KERNELS",
    "SEISMIC",
    "SPECS",
    "STATION",
    "WAVE8_COEFFS",
    "Param",
    "choose_decomposition",
    "climate_dt_limit",
    "defaults",
    "schema",
    "seismic_dt_limit",
    "valid_rank_counts",
    "validate",
]

_MAX_RANKS_LISTED = 16


def defaults(kernel: str) -> dict[str, Any]:
    """Return the default parameters of ``kernel`` (before derived values are filled)."""
    return {k: p.default for k, p in _spec(kernel).items()}


def _spec(kernel: str) -> dict[str, Param]:
    if kernel not in SPECS:
        raise ValueError(f"unknown kernel {kernel!r}; known kernels: {', '.join(sorted(SPECS))}")
    return SPECS[kernel]


def _check_value(where: str, name: str, p: Param, value: Any) -> Any:
    if value is None:
        if p.nullable:
            return None
        raise ValueError(f"{where}: {name} must not be null")
    if p.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"{where}: {name} must be an integer, got {value!r}")
    elif p.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    elif p.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
    elif p.kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, got {value!r}")
        if p.choices and value not in p.choices:
            raise ValueError(
                f"{where}: {name}={value!r} is not allowed; choose one of {', '.join(p.choices)}"
            )
    elif p.kind == "list" and not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {name} must be a list, got {value!r}")
    if p.kind in ("int", "float"):
        if p.minimum is not None and value < p.minimum:
            raise ValueError(f"{where}: {name} must be >= {p.minimum:g}, got {value!r}")
        if p.exclusive_minimum is not None and value <= p.exclusive_minimum:
            raise ValueError(f"{where}: {name} must be > {p.exclusive_minimum:g}, got {value!r}")
        if p.maximum is not None and value > p.maximum:
            raise ValueError(f"{where}: {name} must be <= {p.maximum:g}, got {value!r}")
    return value


def _fill(where: str, spec: dict[str, Param], params: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValueError(f"{where}: parameters must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(spec))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"{where}: unknown parameter(s) {', '.join(hints)}; allowed: {', '.join(sorted(spec))}"
        )
    return {name: _check_value(where, name, p, params.get(name, p.default)) for name, p in spec.items()}


def _factor_pairs(n: int) -> list[tuple[int, int]]:
    return [(a, n // a) for a in range(1, n + 1) if n % a == 0]


def choose_decomposition(ranks: int, rows: int, cols: int, halo: int = 1) -> tuple[int, int] | None:
    """Pick a process grid ``(prow, pcol)`` with ``prow * pcol == ranks`` that divides the grid.

    Prefers the smallest halo perimeter, then more rows (contiguous row halos). Every
    subdomain keeps at least ``halo`` rows and columns. Returns ``None`` when none fits.
    """
    best: tuple[float, int, tuple[int, int]] | None = None
    for prow, pcol in _factor_pairs(ranks):
        if rows % prow or cols % pcol or rows // prow < halo or cols // pcol < halo:
            continue
        key = (rows / prow + cols / pcol, -prow, (prow, pcol))
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def valid_rank_counts(rows: int, cols: int, halo: int = 1, limit: int = _MAX_RANKS_LISTED) -> list[int]:
    """Rank counts up to ``limit`` that :func:`choose_decomposition` can place on the grid."""
    return [n for n in range(1, limit + 1) if choose_decomposition(n, rows, cols, halo) is not None]


def _check_ranks(kernel: str, out: dict[str, Any], ranks: int, rows: int, cols: int, halo: int) -> None:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"{kernel}: ranks must be a positive integer, got {ranks!r}")
    dec = out.get("decomposition")
    if dec is not None:
        if len(dec) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dec):
            raise ValueError(
                f"{kernel}: decomposition must be [rows, cols] of positive integers, got {dec!r}"
            )
        prow, pcol = dec
        if prow * pcol != ranks:
            raise ValueError(f"{kernel}: decomposition {prow}x{pcol} needs {prow * pcol} ranks, got {ranks}")
        if rows % prow or cols % pcol or rows // prow < halo or cols // pcol < halo:
            raise ValueError(
                f"{kernel}: decomposition {prow}x{pcol} does not divide the {rows}x{cols} grid "
                f"into blocks of at least {halo} cells"
            )
        out["decomposition"] = [prow, pcol]
        return
    found = choose_decomposition(ranks, rows, cols, halo)
    if found is None:
        ok = valid_rank_counts(rows, cols, halo)
        raise ValueError(
            f"{kernel}: {ranks} ranks do not divide the {rows}x{cols} grid (rows x cols); "
            f"rank counts that do (up to {_MAX_RANKS_LISTED}): {', '.join(map(str, ok))}"
        )
    out["decomposition"] = list(found)
    if out.get("device") == "cuda" and ranks > 1:
        raise ValueError(
            f"{kernel}: device='cuda' runs on 1 rank; use device='cpu' (or 'auto') for {ranks} MPI ranks"
        )


def climate_dt_limit(p: dict[str, Any]) -> float:
    """Largest stable time step (s) of the explicit upwind advection-diffusion scheme."""
    dx = p["dx_km"] * 1000.0
    umax = abs(p["wind_u_m_s"]) + abs(p["shear_u_m_s"])
    vmax = abs(p["wind_v_m_s"]) + abs(p["shear_v_m_s"])
    rate = umax / dx + vmax / dx + 4.0 * p["diffusivity_m2_s"] / (dx * dx)
    return math.inf if rate == 0 else 1.0 / rate


def _max_vp(p: dict[str, Any]) -> float:
    vps = [p["vp_m_s"]]
    if p["velocity_model"] == "basin":
        vps.append(p["basin_vp_m_s"])
    if p["velocity_model"] == "layered" and p["layers"]:
        vps.extend(v for _, v in p["layers"])
    return max(vps)


def seismic_dt_limit(p: dict[str, Any]) -> float:
    """Largest stable leapfrog step (s): ``vmax dt / dx <= sqrt(2 / sum|c|) = 0.5546``."""
    s = abs(WAVE8_COEFFS[0]) + 2.0 * sum(abs(c) for c in WAVE8_COEFFS[1:])
    return math.sqrt(2.0 / s) * p["dx_m"] / _max_vp(p)


def _climate(out: dict[str, Any], ranks: int) -> None:
    limit = climate_dt_limit(out)
    if out["dt_s"] is None:
        out["dt_s"] = 0.9 * limit if math.isfinite(limit) else 600.0
    elif out["dt_s"] > limit:
        raise ValueError(
            f"climate: dt_s={out['dt_s']:g} is unstable for this grid, wind and diffusivity: "
            f"the CFL limit is dt_s <= {limit:.6g} (lower dt_s or raise dx_km)"
        )
    _check_ranks("climate", out, ranks, out["ny"], out["nx"], 1)


def _seismic(out: dict[str, Any], ranks: int) -> None:
    if out["velocity_model"] == "layered":
        layers = out["layers"] or [[out["nz"] * out["dx_m"] * 0.3, out["vp_m_s"] * 1.5]]
        clean = []
        for item in layers:
            if (
                not isinstance(item, (list, tuple))
                or len(item) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)
                or item[0] < 0
                or item[1] <= 0
            ):
                raise ValueError(f"seismic: each layer must be [top_m >= 0, vp_m_s > 0], got {item!r}")
            clean.append([float(item[0]), float(item[1])])
        out["layers"] = sorted(clean)
    width, depth = out["nx"] * out["dx_m"], out["nz"] * out["dx_m"]
    out["source_x_m"] = width / 2 if out["source_x_m"] is None else out["source_x_m"]
    out["source_z_m"] = depth * 0.6 if out["source_z_m"] is None else out["source_z_m"]
    if out["basin_center_x_m"] is None:
        out["basin_center_x_m"] = width / 2
    for key, size in (("source_x_m", width), ("source_z_m", depth), ("receiver_depth_m", depth)):
        if out[key] >= size:
            raise ValueError(
                f"seismic: {key}={out[key]:g} lies outside the domain; allowed 0 <= {key} < {size:g}"
            )
    limit = seismic_dt_limit(out)
    if out["dt_s"] is None:
        out["dt_s"] = 0.9 * limit
    elif out["dt_s"] > limit:
        raise ValueError(
            f"seismic: dt_s={out['dt_s']:g} is unstable: the CFL limit for the 8th-order scheme "
            f"(vmax dt/dx <= 0.5546, vmax={_max_vp(out):g} m/s) is dt_s <= {limit:.6g}"
        )
    if out["boundary"] == "absorbing" and 2 * out["sponge_cells"] >= out["nx"]:
        raise ValueError(
            f"seismic: sponge_cells={out['sponge_cells']} leaves no interior; "
            f"allowed sponge_cells < {out['nx'] // 2}"
        )
    _check_ranks("seismic", out, ranks, out["nz"], out["nx"], 4)


def _assembly_line(out: dict[str, Any], ranks: int) -> None:
    stations = out["stations"]
    if stations is None:
        stations = [{"name": f"S{i + 1}"} for i in range(3)]
    if not stations:
        raise ValueError("assembly_line: stations must list at least one station")
    clean = []
    for i, st in enumerate(stations):
        s = _fill(f"assembly_line: stations[{i}]", STATION, st)
        s["name"] = s["name"] or f"S{i + 1}"
        clean.append(s)
    out["stations"] = clean
    if out["warmup"] >= out["horizon"]:
        raise ValueError(f"assembly_line: warmup={out['warmup']:g} must be below horizon={out['horizon']:g}")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"assembly_line: ranks must be a positive integer, got {ranks!r}")


_CROSS: dict[str, Callable[[dict[str, Any], int], None]] = {
    "climate": _climate,
    "seismic": _seismic,
    "assembly_line": _assembly_line,
}


def validate(kernel: str, params: dict[str, Any], ranks: int = 1) -> dict[str, Any]:
    """Check ``params`` for ``kernel`` run on ``ranks`` MPI ranks and return them normalised.

    Defaults are filled, derived values (time step, source position, process grid) are
    computed, and numbers are converted to their declared type.

    :param kernel: one of :data:`KERNELS`.
    :param params: user parameters (unknown keys are refused).
    :param ranks: number of MPI ranks the kernel will run on.
    :raises ValueError: with a message that says what is allowed.
    """
    spec = _spec(kernel)
    out = _fill(kernel, spec, params)
    _CROSS[kernel](out, ranks)
    return out


_JSON_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "str": "string",
    "list": "array",
    "object": "object",
}


def _prop(p: Param) -> dict[str, Any]:
    prop: dict[str, Any] = {"description": p.description}
    t = _JSON_TYPES[p.kind]
    prop["type"] = [t, "null"] if p.nullable else t
    if p.default is not None:
        prop["default"] = p.default
    for key, val in (
        ("minimum", p.minimum),
        ("exclusiveMinimum", p.exclusive_minimum),
        ("maximum", p.maximum),
    ):
        if val is not None:
            prop[key] = val
    if p.choices:
        prop["enum"] = list(p.choices) + ([None] if p.nullable else [])
    return prop


def schema(kernel: str) -> dict[str, Any]:
    """JSON-Schema (draft 2020-12) of ``kernel``'s parameters, for UI forms.

    Cross-field rules (CFL, rank counts) are not expressible here; :func:`validate` checks them.
    """
    spec = _spec(kernel)
    props = {name: _prop(p) for name, p in spec.items()}
    if kernel == "assembly_line":
        station = {
            "type": "object",
            "additionalProperties": False,
            "properties": {n: _prop(p) for n, p in STATION.items()},
        }
        props["stations"]["items"] = station
    if "decomposition" in props:
        props["decomposition"].update(
            {"items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2}
        )
    if kernel == "seismic":
        props["layers"]["items"] = {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{kernel} parameters",
        "description": KERNELS[kernel],
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }
