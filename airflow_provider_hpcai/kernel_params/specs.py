"""Parameter tables of the kernels (pure Python): names, types, defaults, bounds, descriptions.

Read through :mod:`simulation_kernels.params`, which validates against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ASSEMBLY_LINE", "CLIMATE", "KERNELS", "SEISMIC", "SPECS", "STATION", "WAVE8_COEFFS", "Param"]

KERNELS: dict[str, str] = {
    "climate": "2D regional climate model: advection-diffusion of heat and moisture, "
    "condensation and rain, storm-cell detection (MPI, numba, CUDA)",
    "seismic": "2D acoustic wave, 8th order in space, Ricker source, absorbing boundaries, "
    "seismograms and peak-ground-motion map (MPI, numba, CUDA)",
    "assembly_line": "discrete-event production line: stochastic service, finite buffers, "
    "breakdowns, material shortages, staffing and energy (replications)",
}

#: 8th-order central second-derivative coefficients c0..c4 (c0 is the centre weight).
WAVE8_COEFFS: tuple[float, ...] = (-205.0 / 72.0, 8.0 / 5.0, -1.0 / 5.0, 8.0 / 315.0, -1.0 / 560.0)

_DEVICE = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Param:
    """One parameter of a kernel.

    :param kind: ``int``, ``float``, ``bool``, ``str``, ``list`` or ``object``.
    :param default: value used when the parameter is absent (``None`` means "derived").
    :param description: one line for documentation and UI forms.
    :param minimum: inclusive lower bound for numbers.
    :param exclusive_minimum: exclusive lower bound for numbers (e.g. strictly positive).
    :param maximum: inclusive upper bound for numbers.
    :param choices: allowed values for strings.
    :param nullable: whether ``None`` is accepted.
    """

    kind: str
    default: Any
    description: str
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False


def _pos(kind: str, default: Any, description: str, **kw: Any) -> Param:
    return Param(kind, default, description, exclusive_minimum=0, **kw)


_COMMON = {
    "device": Param(
        "str", "auto", "where stencils run: auto (GPU when present and 1 rank), cpu or cuda", choices=_DEVICE
    ),
    "progress_lines": Param(
        "int", 20, "number of progress lines printed over the run", minimum=1, maximum=1000
    ),
    "decomposition": Param("list", None, "MPI process grid [rows, cols]; derived when null", nullable=True),
}

CLIMATE: dict[str, Param] = {
    "nx": Param("int", 128, "grid points west-east", minimum=8),
    "ny": Param("int", 128, "grid points south-north", minimum=8),
    "dx_km": _pos("float", 10.0, "grid spacing (both directions) in km"),
    "dt_s": Param(
        "float",
        None,
        "time step in s; derived (0.9 x stability limit) when null",
        exclusive_minimum=0,
        nullable=True,
    ),
    "steps": Param("int", 300, "number of time steps", minimum=1),
    "wind_u_m_s": Param("float", 8.0, "mean west-east wind in m/s"),
    "wind_v_m_s": Param("float", 3.0, "mean south-north wind in m/s"),
    "shear_u_m_s": Param("float", 6.0, "amplitude of the west-east jet varying with latitude, m/s"),
    "shear_v_m_s": Param("float", 4.0, "amplitude of the south-north wave varying with longitude, m/s"),
    "diffusivity_m2_s": Param("float", 2000.0, "eddy diffusivity of heat and moisture, m2/s", minimum=0),
    "t0_k": Param("float", 290.0, "reference temperature, K"),
    "w0_mm": _pos("float", 40.0, "saturation column water at the reference temperature, mm"),
    "cc_per_k": Param("float", 0.07, "Clausius-Clapeyron growth rate of saturation water, 1/K", minimum=0),
    "latent_k_per_mm": Param("float", 0.25, "warming per mm of condensed water, K/mm", minimum=0),
    "initial_rh": Param("float", 0.8, "initial relative humidity", minimum=0, maximum=2),
    "evaporation_mm_h": Param("float", 2.0, "surface evaporation rate into dry air, mm/h", minimum=0),
    "condensation_time_s": _pos("float", 1800.0, "relaxation time of supersaturation into rain, s"),
    "surface_relax_time_s": _pos("float", 1.0e4, "relaxation time of temperature to the surface, s"),
    "hotspots": Param(
        "int", 16, "number of warm or cool surface patches (random sign)", minimum=0, maximum=1000
    ),
    "hotspot_k": Param("float", 6.0, "surface temperature anomaly of a patch, K"),
    "moist_blobs": Param("int", 8, "number of initial moist air masses", minimum=0, maximum=1000),
    "blob_rh": Param("float", 1.0, "relative humidity at a moist blob's centre", minimum=0, maximum=5),
    "feature_radius_km": _pos("float", 70.0, "radius of surface patches and moist blobs, km"),
    "storm_threshold_mm_h": _pos("float", 0.5, "rain rate above which a cell belongs to a storm, mm/h"),
    "storm_min_cells": Param("int", 4, "smallest storm reported, grid cells", minimum=1),
    "max_storms": Param("int", 50, "largest number of storms listed (by total rain)", minimum=1),
    "seed": Param("int", 0, "random seed of the initial and surface features", minimum=0),
    **_COMMON,
}

SEISMIC: dict[str, Param] = {
    "nx": Param("int", 400, "grid points horizontally", minimum=16),
    "nz": Param("int", 200, "grid points in depth", minimum=16),
    "dx_m": _pos("float", 10.0, "grid spacing (both directions) in m"),
    "dt_s": Param(
        "float",
        None,
        "time step in s; derived (0.9 x stability limit) when null",
        exclusive_minimum=0,
        nullable=True,
    ),
    "steps": Param("int", 600, "number of time steps", minimum=1),
    "f0_hz": _pos("float", 10.0, "Ricker peak frequency, Hz"),
    "source_x_m": Param("float", None, "source x in m; domain centre when null", minimum=0, nullable=True),
    "source_z_m": Param(
        "float", None, "source depth in m; 60 % of the depth when null", minimum=0, nullable=True
    ),
    "amplitude": Param("float", 1.0, "source amplitude scale", minimum=0),
    "magnitude": Param(
        "float",
        None,
        "magnitude: multiplies the amplitude by 10**(1.5 (M - 4))",
        minimum=-2,
        maximum=10,
        nullable=True,
    ),
    "velocity_model": Param(
        "str", "homogeneous", "velocity model", choices=("homogeneous", "layered", "basin")
    ),
    "vp_m_s": _pos("float", 2000.0, "velocity of the homogeneous medium / bedrock, m/s"),
    "layers": Param(
        "list", None, "layered model: [[top_m, vp_m_s], ...] below the surface layer", nullable=True
    ),
    "basin_vp_m_s": _pos("float", 600.0, "velocity of the soft-soil basin, m/s"),
    "basin_center_x_m": Param(
        "float", None, "basin centre x in m; domain centre when null", minimum=0, nullable=True
    ),
    "basin_width_m": _pos("float", 1500.0, "basin width at the surface, m"),
    "basin_depth_m": _pos("float", 300.0, "basin depth at its centre, m"),
    "boundary": Param(
        "str",
        "absorbing",
        "absorbing: free surface on top, sponge elsewhere; periodic",
        choices=("absorbing", "periodic"),
    ),
    "sponge_cells": Param("int", 30, "sponge width in cells", minimum=0),
    "receiver_depth_m": Param(
        "float", 50.0, "depth of the receiver line, m (pressure vanishes at the free surface)", minimum=0
    ),
    "receiver_spacing": Param("int", 4, "receiver every this many cells along x", minimum=1),
    "peak_map": Param("bool", True, "record the peak |du/dt| map over the domain"),
    "precision": Param("str", "float32", "floating-point type of the fields", choices=("float32", "float64")),
    **_COMMON,
}

ASSEMBLY_LINE: dict[str, Param] = {
    "stations": Param(
        "list",
        None,
        "stations in line order (see docs/kernels.md); 3 default stations when null",
        nullable=True,
    ),
    "arrival": Param(
        "str",
        "saturated",
        "saturated: raw parts always there; poisson: arrivals at arrival_rate",
        choices=("saturated", "poisson"),
    ),
    "arrival_rate": _pos("float", 1.0, "poisson arrivals per time unit"),
    "material_lot": Param("int", 0, "units per material delivery (0: no material constraint)", minimum=0),
    "material_interval": _pos("float", 50.0, "mean time between material deliveries"),
    "material_initial": Param("int", 100, "units in stock at the start", minimum=0),
    "horizon": _pos("float", 10000.0, "simulated time"),
    "warmup": Param("float", 1000.0, "time discarded before statistics start", minimum=0),
    "seed": Param("int", 0, "random seed of the first replication", minimum=0),
    "replications": Param("int", 1, "number of replications (seeds seed, seed+1, ...)", minimum=1),
    "max_events": Param("int", 50_000_000, "stop with an error past this many events", minimum=1),
    "progress_lines": _COMMON["progress_lines"],
}

STATION: dict[str, Param] = {
    "name": Param("str", "", "station name"),
    "service_mean": _pos("float", 1.0, "mean service time at full staffing"),
    "service_dist": Param(
        "str",
        "exponential",
        "service time distribution",
        choices=("exponential", "deterministic", "lognormal", "erlang"),
    ),
    "service_cv": Param(
        "float", 0.5, "coefficient of variation (lognormal); erlang uses k=round(1/cv^2)", exclusive_minimum=0
    ),
    "buffer": Param("int", 5, "slots in the buffer before this station (ignored for the first)", minimum=0),
    "mtbf": Param(
        "float",
        None,
        "mean operating time between failures; no failures when null",
        exclusive_minimum=0,
        nullable=True,
    ),
    "mttr": _pos("float", 10.0, "mean time to repair"),
    "staff": Param("int", 1, "workers assigned", minimum=1),
    "required_staff": Param("int", 1, "workers for full speed; fewer slow service proportionally", minimum=1),
    "power_busy_kw": Param("float", 10.0, "power while processing, kW", minimum=0),
    "power_idle_kw": Param("float", 2.0, "power while starved or blocked, kW", minimum=0),
    "power_down_kw": Param("float", 0.5, "power while broken down, kW", minimum=0),
}

SPECS: dict[str, dict[str, Param]] = {"climate": CLIMATE, "seismic": SEISMIC, "assembly_line": ASSEMBLY_LINE}
