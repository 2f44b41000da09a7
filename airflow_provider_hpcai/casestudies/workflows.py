"""The case-study DAGs, built by functions (used by ``dags/*.py`` and as template factories).

Runtime choices come from DAG params (the backend included): a small ``plan`` task reads them,
validates them with the kernels' validators and hands rows to ``.expand_kwargs``, so the
backend, connection and sizes are picked per run (``airflow dags test DAG -c '{"backend": "slurm"}'``
or the trigger form). Defaults fit a 2-core machine: each case study finishes in well under a
minute on the local backend.

Parse cost: Airflow SDK and this provider's operator modules only; numpy, dask, statsmodels,
matplotlib and the kernels load inside tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, task

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends import BACKENDS
from airflow_provider_hpcai.casestudies.common import mapped_results
from airflow_provider_hpcai.casestudies.operators import StormRainfallOperator
from airflow_provider_hpcai.operators.dask import dask_task
from airflow_provider_hpcai.operators.simulation import SimulationOperator

if TYPE_CHECKING:
    from distributed import Client

    from airflow_provider_hpcai.resources import Resources

__all__ = [
    "climate_adaptive",
    "climate_adaptive_template",
    "default_params",
    "manufacturing_optimization",
    "manufacturing_optimization_template",
    "seismic_risk",
    "seismic_risk_template",
]

_START = datetime(2026, 1, 1, tzinfo=UTC)
_JOB = {"memory": "1G", "time_limit": "00:10:00"}


def _backend_params() -> dict[str, Param]:
    default = config.get("default_backend") or "local"
    return {
        "backend": Param(default, enum=list(BACKENDS), title="Backend",
                         description="where the simulation jobs run (default [hpcai] default_backend)"),
        "conn_id": Param("", type="string", title="Connection",
                         description="the backend's connection id (empty: its default, e.g. slurm_default)"),
        "workdir": Param("", type="string", title="Job working directory",
                         description="absolute folder on the cluster's shared file system (empty: the backend's default)"),
        "results_dir": Param("", type="string", title="Results folder",
                             description="where plots and JSON go (empty: [hpcai] results_dir, $HPCAI_RESULTS_DIR or $AIRFLOW_HOME/hpcai/results)"),
    }


def _dag(dag_id: str, params: dict[str, Param], overrides: Mapping[str, Any] | None, doc: str, tags: list[str],
         start_date: datetime) -> DAG:
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise ValueError(f"{dag_id}: unknown parameters {sorted(unknown)}; known: {sorted(params)}")
    for key, value in (overrides or {}).items():
        params[key] = Param(value, **{k: v for k, v in params[key].schema.items()})
    return DAG(dag_id=dag_id, schedule=None, start_date=start_date, catchup=False, params=params,
               tags=["hpcai", "case-study", *tags], doc_md=doc, render_template_as_native_obj=True,
               max_active_runs=4)


def _folder(context: Mapping[str, Any]) -> str:
    from airflow_provider_hpcai.casestudies.common import results_folder

    return results_folder(context["params"].get("results_dir"), context["dag"].dag_id, context["run_id"])


def default_params(builder: Any) -> dict[str, Any]:
    """The default values of a case-study builder's DAG params (for templates and tests)."""
    return {k: v for k, v in builder().params.dump().items()}


# ---------------------------------------------------------------------------------------- climate
def _rainfall_totals(client: Client, runs: Any, storms: Any, results_dir: str) -> dict[str, Any]:
    from airflow_provider_hpcai.casestudies.climate import aggregate_rainfall

    return aggregate_rainfall(client, runs[0], mapped_results(storms), results_dir)


def climate_adaptive(dag_id: str = "climate_adaptive", *, overrides: Mapping[str, Any] | None = None,
                     start_date: datetime = _START) -> DAG:
    """Climate run on MPI ranks -> one rainfall analysis per detected storm -> Dask totals and maps."""
    params = {
        "nx": Param(96, type="integer", minimum=16, maximum=4096, title="Grid points west-east"),
        "ny": Param(96, type="integer", minimum=16, maximum=4096, title="Grid points south-north"),
        "steps": Param(200, type="integer", minimum=1, maximum=100000, title="Time steps"),
        "ranks": Param(2, type="integer", minimum=1, maximum=256, title="MPI ranks of the climate run"),
        "seed": Param(0, type="integer", minimum=0, title="Seed of the initial weather"),
        "storm_threshold_mm_h": Param(0.5, type="number", exclusiveMinimum=0, title="Storm rain-rate threshold (mm/h)",
                                      description="raise it (e.g. 100) for a storm-free run: zero mapped analyses"),
        "storm_min_cells": Param(4, type="integer", minimum=1, title="Smallest storm (cells)"),
        "max_storms": Param(50, type="integer", minimum=1, maximum=1000, title="Storms the kernel lists at most"),
        "max_analyses": Param(8, type="integer", minimum=0, maximum=1000, title="Storms analysed at most (wettest first)"),
        "refine": Param(4, type="integer", minimum=1, maximum=16, title="Refinement of the per-storm analysis"),
        "climate_overrides": Param({}, type="object", title="Other climate-kernel parameters",
                                   description='e.g. {"initial_rh": 0.5} (see docs/kernels.md)'),
        **_backend_params(),
    }
    doc = ("**Adaptive climate.** A regional climate run (MPI ranks) detects storm cells; each one drives a "
           "mapped high-resolution rainfall analysis (none when it is dry); Dask sums the rain per storm and "
           "over the domain and draws the maps. See docs/casestudies.md.")
    with _dag(dag_id, params, overrides, doc, ["climate", "dask"], start_date) as dag:
        @task
        def plan(**context: Any) -> list[dict[str, Any]]:
            """The climate run's arguments (mapped: the backend is chosen per run); XCom ``results_dir`` too."""
            from airflow_provider_hpcai.casestudies.climate import plan_run
            from airflow_provider_hpcai.casestudies.common import backend_kwargs

            p = context["params"]
            context["ti"].xcom_push(key="results_dir", value=_folder(context))
            return plan_run(p, backend_kwargs(p))

        planned = plan()
        climate = SimulationOperator.partial(task_id="climate_run", kernel="climate", job_resources=_JOB,
                                             poll_interval=1).expand_kwargs(planned)

        @task
        def detect_storms(runs: Any, **context: Any) -> list[dict[str, Any]]:
            """One analysis request per storm cell the run found: the fan-out of the next task."""
            from airflow_provider_hpcai.casestudies.climate import storm_requests
            from airflow_provider_hpcai.casestudies.common import backend_kwargs

            p = context["params"]
            run = runs[0]
            requests = storm_requests(run, backend_kwargs(p), refine=int(p["refine"]), limit=int(p["max_analyses"]))
            print(f"{len(run['summary']['storms'])} storm cell(s) detected; {len(requests)} analysis task(s) mapped")
            return requests

        storms = StormRainfallOperator.partial(task_id="storm_rainfall", poll_interval=1).expand_kwargs(
            detect_storms(climate.output))
        totals = dask_task(_rainfall_totals, task_id="rainfall_totals", trigger_rule="none_failed")(
            climate.output, storms.output, planned["results_dir"])
        _report(dag_id, totals, planned["results_dir"])
    return dag


def _report(dag_id: str, upstream: Any, results_dir: Any) -> Any:
    @task(task_id="report")
    def report(_: Any, folder: str) -> str:
        from airflow_provider_hpcai.casestudies.report import case_report, case_section

        path = case_report(dag_id, folder)
        for line in case_section(dag_id, folder)[1]:
            print(line)
        print(f"Report: {path}")
        return path

    return report(upstream, results_dir)


# ---------------------------------------------------------------------------------------- seismic
def _hazard(client: Client, runs: Any, ensemble: Mapping[str, Any], results_dir: str) -> dict[str, Any]:
    from airflow_provider_hpcai.casestudies.seismic import aggregate_hazard

    return aggregate_hazard(client, mapped_results(runs), ensemble, results_dir)


def seismic_risk(dag_id: str = "seismic_risk", *, overrides: Mapping[str, Any] | None = None,
                 start_date: datetime = _START) -> DAG:
    """Scenario ensemble (sources x magnitudes x soils) as mapped seismic runs -> Dask hazard curves and risk map."""
    params = {
        "sources": Param([0.3, 0.7], type="array", items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                         minItems=1, title="Epicentres (fractions of the profile width)"),
        "magnitudes": Param([4.5, 5.5], type="array", items={"type": "number", "minimum": 0, "maximum": 10},
                            minItems=1, title="Magnitudes"),
        "soils": Param(["rock", "layered", "basin"], type="array", minItems=1, title="Soil models",
                       items={"type": "string", "enum": ["rock", "layered", "basin"]}),
        "b_value": Param(1.0, type="number", minimum=0, title="Gutenberg-Richter b-value"),
        "events_per_year": Param(0.05, type="number", exclusiveMinimum=0, title="Events per year (all scenarios)"),
        "level": Param(None, type=["number", "null"], title="Risk-map level",
                       description="peak motion for the risk map (empty: the weighted median of the sites' peaks)"),
        "sigma_ln": Param(0.5, type="number", minimum=0, maximum=3, title="Ground-motion scatter (ln units)",
                          description="aleatory variability around each scenario's peak; 0: a plain weighted count"),
        "map_depth": Param(0.5, type="number", exclusiveMinimum=0, maximum=1, title="Risk-map depth (fraction)"),
        "nx": Param(160, type="integer", minimum=32, maximum=8192, title="Grid points along the profile"),
        "nz": Param(80, type="integer", minimum=32, maximum=8192, title="Grid points in depth"),
        "dx_m": Param(10.0, type="number", exclusiveMinimum=0, title="Grid spacing (m)"),
        "steps": Param(320, type="integer", minimum=1, maximum=100000, title="Time steps"),
        "sponge_cells": Param(16, type="integer", minimum=0, maximum=200, title="Absorbing layer (cells)"),
        "ranks": Param(1, type="integer", minimum=1, maximum=256, title="MPI ranks per scenario"),
        **_backend_params(),
    }
    doc = ("**Seismic risk.** An ensemble of earthquake scenarios (sources x magnitudes x soil models) runs as "
           "mapped seismic stages; Dask reduces them to hazard curves per site and a risk map. See docs/casestudies.md.")
    with _dag(dag_id, params, overrides, doc, ["seismic", "dask"], start_date) as dag:
        @task
        def plan(**context: Any) -> list[dict[str, Any]]:
            """One row of operator arguments per scenario; XCom ``ensemble`` and ``results_dir`` too."""
            from airflow_provider_hpcai.casestudies.common import backend_kwargs
            from airflow_provider_hpcai.casestudies.seismic import plan_ensemble

            p = dict(context["params"])
            runs = plan_ensemble(p, backend_kwargs(p))
            context["ti"].xcom_push(key="ensemble", value=p)
            context["ti"].xcom_push(key="results_dir", value=_folder(context))
            print(f"{len(runs)} scenario(s) planned")
            return runs

        planned = plan()
        scenarios = SimulationOperator.partial(task_id="scenario", kernel="seismic", job_resources=_JOB,
                                               poll_interval=1).expand_kwargs(planned)
        hazard = dask_task(_hazard, task_id="hazard")(scenarios.output, planned["ensemble"], planned["results_dir"])
        _report(dag_id, hazard, planned["results_dir"])
    return dag


# ---------------------------------------------------------------------------------------- manufacturing
def _sweep(client: Client, points: Any, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    from airflow_provider_hpcai.casestudies.manufacturing import run_sweep

    return run_sweep(client, mapped_results(points), replications=int(settings["replications"]),
                     horizon=float(settings["horizon"]), warmup=float(settings["warmup"]), seed=int(settings["seed"]))


def manufacturing_optimization(dag_id: str = "manufacturing_optimization", *,
                               overrides: Mapping[str, Any] | None = None, start_date: datetime = _START) -> DAG:
    """Dask sweep of the line model -> statsmodels surrogate -> recommendation -> confirmation runs."""
    params = {
        "buffers": Param([0, 2, 4, 8, 16], type="array", items={"type": "integer", "minimum": 0, "maximum": 1000},
                         minItems=3, title="Buffer sizes to sweep"),
        "staffing": Param([1, 2, 3], type="array", items={"type": "integer", "minimum": 1, "maximum": 3},
                          minItems=2, title="Crew sizes per station (3 = fully staffed)"),
        "scenarios": Param(["no_shortage", "mild_shortage", "severe_shortage"], type="array", minItems=1,
                           items={"type": "string", "enum": ["no_shortage", "mild_shortage", "severe_shortage"]},
                           title="Material-shortage scenarios"),
        "scenario_probabilities": Param({"no_shortage": 0.6, "mild_shortage": 0.3, "severe_shortage": 0.1},
                                        type="object", title="Scenario probabilities"),
        "economics": Param({"unit_value": 12.0, "energy_price": 0.2, "wage": 25.0, "slot_cost": 3.0}, type="object",
                           title="Margin per unit, energy price per kWh, wage per worker-hour, cost per buffer slot-hour"),
        "replications": Param(8, type="integer", minimum=1, maximum=1000, title="Replications per sweep point"),
        "horizon": Param(4000.0, type="number", exclusiveMinimum=0, title="Simulated minutes per replication"),
        "warmup": Param(200.0, type="number", minimum=0, title="Warm-up minutes discarded"),
        "seed": Param(0, type="integer", minimum=0, title="First seed"),
        "confirm_replications": Param(16, type="integer", minimum=2, maximum=1000,
                                      title="Replications of the confirmation runs"),
        **_backend_params(),
    }
    doc = ("**Manufacturing optimisation.** A Dask sweep of the assembly-line model over buffer sizes, crews and "
           "material shortages; a statsmodels surrogate recommends a configuration with its predicted throughput "
           "and energy per unit; confirmation runs check it. See docs/casestudies.md.")
    with _dag(dag_id, params, overrides, doc, ["manufacturing", "dask"], start_date) as dag:
        @task(multiple_outputs=True)
        def plan(**context: Any) -> dict[str, Any]:
            from airflow_provider_hpcai.casestudies.manufacturing import sweep_points

            p = context["params"]
            points = sweep_points(p)
            print(f"{len(points)} sweep point(s) x {p['replications']} replication(s)")
            settings = {k: p[k] for k in ("replications", "horizon", "warmup", "seed")}
            return {"points": points, "settings": settings, "results_dir": _folder(context)}

        planned = plan()
        rows = dask_task(_sweep, task_id="sweep")(planned["points"], planned["settings"])

        @task
        def surrogate(sweep: list[dict[str, Any]], folder: str, **context: Any) -> dict[str, Any]:
            from airflow_provider_hpcai.casestudies.manufacturing import analyse

            out = analyse(sweep, context["params"], folder)
            rec = out["recommendation"]
            predicted = ", ".join(f"{name}: {60 * v['throughput']:.1f} units/h at {v['energy_per_unit_kwh']:.2f} kWh/unit"
                                  for name, v in rec["predicted"].items())
            print(f"recommended: buffer {rec['buffer']}, crew {rec['staff']}, expected margin "
                  f"{rec['expected_margin_per_hour']:.1f}/h; predicted {predicted}")
            return out

        fitted = surrogate(rows, planned["results_dir"])

        @task
        def plan_confirmation(fit: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
            from airflow_provider_hpcai.casestudies.common import backend_kwargs
            from airflow_provider_hpcai.casestudies.manufacturing import plan_confirmation as confirm_rows

            p = context["params"]
            return confirm_rows(fit["recommendation"], p, backend_kwargs(p))

        confirm = SimulationOperator.partial(task_id="confirm", kernel="assembly_line",
                                             job_resources={"memory": "512M", "time_limit": "00:10:00"},
                                             poll_interval=1).expand_kwargs(plan_confirmation(fitted))

        @task
        def check(fit: dict[str, Any], runs: Any, folder: str) -> dict[str, Any]:
            import os

            from airflow_provider_hpcai.casestudies.common import write_json
            from airflow_provider_hpcai.casestudies.manufacturing import check_confirmation

            verdict = check_confirmation(fit["recommendation"], mapped_results(runs))
            result = {**fit, "check": verdict}
            write_json(os.path.join(folder, "result.json"), result)
            for row in verdict["scenarios"]:
                th = row["throughput"]
                print(f"{row['scenario']}: throughput predicted {th['predicted']:.4f}, simulated "
                      f"{th['simulated']:.4f} +- {th['ci95']:.4f} per minute ({100 * th['rel_error']:+.1f} %)")
            return {"confirmed": verdict["confirmed"], "scenarios": verdict["scenarios"]}

        _report(dag_id, check(fitted, confirm.output, planned["results_dir"]), planned["results_dir"])
    return dag


# ---------------------------------------------------------------------------------------- templates
def _template(builder: Any, dag_id: str, params: Mapping[str, Any], instance: Mapping[str, Any]) -> DAG:
    created = datetime.fromisoformat(str(instance.get("created") or _START.isoformat()))
    return builder(dag_id, overrides=dict(params), start_date=created if created.tzinfo else
                   created.replace(tzinfo=UTC))


def climate_adaptive_template(*, dag_id: str, params: Mapping[str, Any], resources: Resources,
                              instance: Mapping[str, Any]) -> DAG:
    """Template factory of ``templates/climate-adaptive`` (params become the DAG params' defaults)."""
    return _template(climate_adaptive, dag_id, params, instance)


def seismic_risk_template(*, dag_id: str, params: Mapping[str, Any], resources: Resources,
                          instance: Mapping[str, Any]) -> DAG:
    """Template factory of ``templates/seismic-risk``."""
    return _template(seismic_risk, dag_id, params, instance)


def manufacturing_optimization_template(*, dag_id: str, params: Mapping[str, Any], resources: Resources,
                                        instance: Mapping[str, Any]) -> DAG:
    """Template factory of ``templates/manufacturing-optimization``."""
    return _template(manufacturing_optimization, dag_id, params, instance)
