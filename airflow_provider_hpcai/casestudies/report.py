"""HTML reports with embedded plots, and the demo's combined report.

``python -m airflow_provider_hpcai.casestudies.report --results DIR --advisor-home DIR --out FILE``
collects the latest run of each case study under ``DIR`` (``<dag_id>/<run_id>/``), adds the
advisor's predictions against what the jobs used, writes one self-contained HTML file (images
inlined as base64 PNG: it opens anywhere, offline) and prints a one-screen summary.
"""

from __future__ import annotations

import argparse
import base64
import glob
import html
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["advisor_panels", "build_report", "case_report", "case_section", "demo_report", "main", "usage_fact"]

CASE_DAGS = ("climate_adaptive", "seismic_risk", "manufacturing_optimization")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2733}
header{background:#17324d;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:12px 24px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin:18px 0;padding:16px 22px}
h2{margin:0 0 6px;font-size:18px;color:#17324d}p.lead{margin:0 0 10px;color:#445}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #e3e6ea;text-align:left}
th{color:#556;font-weight:600}figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #e3e6ea;border-radius:4px}figcaption{font-size:12px;color:#556}
.missing{color:#a33}
"""


def _img(path: str) -> str:
    with open(path, "rb") as handle:
        return "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")


def build_report(path: str, title: str, sections: Sequence[Mapping[str, Any]], *, subtitle: str = "") -> str:
    """Write a self-contained HTML report; returns ``path``.

    :param sections: each ``{"title", "lead" (text), "facts" ([(name, value)]), "images" ([(caption, png)]),
        "missing" (text shown when the case study has no result)}``. Images that do not exist are listed as missing.
    """
    parts = [(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
              f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
              f"<p>{html.escape(subtitle)}</p></header><main>")]
    for sec in sections:
        parts.append(f"<section><h2>{html.escape(str(sec['title']))}</h2>")
        if sec.get("missing"):
            parts.append(f"<p class='missing'>{html.escape(str(sec['missing']))}</p></section>")
            continue
        if sec.get("lead"):
            parts.append(f"<p class='lead'>{html.escape(str(sec['lead']))}</p>")
        if sec.get("facts"):
            parts.append("<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                             for k, v in sec["facts"]) + "</table>")
        for caption, png in sec.get("images") or []:
            if png and os.path.exists(png):
                parts.append(f"<figure><img src='{_img(png)}' alt='{html.escape(caption)}'>"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            else:
                parts.append(f"<p class='missing'>missing image: {html.escape(caption)}</p>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(parts))
    return path


def _latest(root: str, dag_id: str, name: str) -> str | None:
    """The newest run folder of ``dag_id`` under ``root`` that holds ``name``."""
    found = glob.glob(os.path.join(root, dag_id, "*", name))
    return os.path.dirname(max(found, key=os.path.getmtime)) if found else None


def _g(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _climate(folder: str, r: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    wettest = r["storms"][0] if r["storms"] else None
    facts = [("grid", (f"{r['grid'][0]} x {r['grid'][1]} cells of {_g(r['dx_km'])} km, "
                       f"{_g(r['simulated_hours'])} h simulated")),
             ("storm cells detected / analysed (mapped tasks)", f"{r['n_storms']} / {r['n_analysed']}"),
             ("rain volume: domain / in storms", (f"{r['total_m3'] / 1e9:.3g} / {r['storms_m3'] / 1e9:.3g} km3 "
                                                  f"({100 * r['storm_share']:.0f} %)"))]
    if wettest:
        facts.append(("wettest storm", (f"#{wettest['id']}: {wettest['area_km2']:.0f} km2, "
                                        f"{wettest['volume_m3'] / 1e9:.3g} km3, refined max "
                                        f"{_g(wettest['refined_max_mm'])} mm")))
    images = [("Accumulated rain and detected storm cells", os.path.join(folder, "rainfall_map.png"))]
    if os.path.exists(os.path.join(folder, "storm_panels.png")):
        images.append(("High-resolution analysis of each storm", os.path.join(folder, "storm_panels.png")))
    line = (f"climate: {r['n_storms']} storm(s) -> {r['n_analysed']} mapped analyses; "
            f"{100 * r['storm_share']:.0f} % of {r['total_m3'] / 1e9:.3g} km3 of rain fell in storms")
    return {"title": "Adaptive climate (climate_adaptive)", "facts": facts, "images": images,
            "lead": "A regional climate run on MPI ranks; each storm cell it detected became one mapped "
                    "high-resolution rainfall task; Dask summed the rain per storm and over the domain."}, [line]


def usage_fact(usage: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The report's line on the Dask workers: jobs, worker-hours, against a fixed cluster sized for the peak."""
    if not usage:
        return None
    jobs = f" in {usage['worker_jobs']} Slurm worker job(s)" if usage.get("worker_jobs") else ""
    fixed = float(usage.get("fixed_worker_hours") or 0.0)
    hours = float(usage.get("worker_hours") or 0.0)
    versus = (f"; a fixed cluster sized for the peak ({usage['peak_workers']} workers for "
              f"{float(usage.get('span_seconds') or 0):.0f} s) would hold {fixed:.4f} "
              f"({100 * (1 - hours / fixed):.0f} % saved)" if fixed > 0 else "")
    return ("Dask workers (worker-hours)",
            f"{usage['workers_started']} worker(s){jobs}, {hours:.4f} worker-hours{versus}")


def _seismic(folder: str, r: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    soils = sorted({s["soil"] for s in r["scenarios"]})
    facts = [("scenarios (mapped seismic runs)", f"{r['n_scenarios']} = sources x magnitudes x soils ({', '.join(soils)})"),
             ("sites", f"{r['n_sites']} surface sites; risk map over {r['map_cells']} grid points"),
             ("risk-map level", f"{_g(r['level'])} (relative peak motion), {r['events_per_year']:g} events/year"),
             ("most exposed site", f"x = {r['worst_site_x_m']:.0f} m: P(exceed) = {r['worst_site_p']:.2f} per event")]
    if usage_fact(r.get("dask_usage")):
        facts.append(usage_fact(r.get("dask_usage")))
    images = [("Hazard curves at surface sites", os.path.join(folder, "hazard_curves.png")),
              ("Risk map over the cross-section", os.path.join(folder, "risk_map.png"))]
    line = (f"seismic: {r['n_scenarios']} scenarios; most exposed site x={r['worst_site_x_m']:.0f} m, "
            f"P(>{_g(r['level'])})={r['worst_site_p']:.2f} per event")
    return {"title": "Seismic risk (seismic_risk)", "facts": facts, "images": images,
            "lead": "An ensemble of earthquake scenarios ran as mapped seismic stages; Dask reduced their "
                    "peak-motion fields into hazard curves and a risk map."}, [line]


def _manufacturing(folder: str, r: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    rec, check = r["recommendation"], r["check"]
    facts = [("sweep", f"{r['points']} configurations simulated on Dask"),
             ("recommended", (f"buffer {rec['buffer']} slots, crew {rec['staff']} per station; "
                              f"expected margin {rec['expected_margin_per_hour']:.0f} per hour"))]
    for row in check["scenarios"]:
        th, en = row["throughput"], row["energy_per_unit_kwh"]
        facts.append((f"{row['scenario'].replace('_', ' ')}: predicted / confirmed",
                      (f"{60 * th['predicted']:.1f} / {60 * th['simulated']:.1f} units/h "
                       f"({100 * th['rel_error']:+.1f} %), {en['predicted']:.3f} / {en['simulated']:.3f} kWh/unit")))
    facts.append(("confirmation", "surrogate confirmed" if check["confirmed"] else "surrogate NOT confirmed"))
    if usage_fact(r.get("dask_usage")):
        facts.append(usage_fact(r.get("dask_usage")))
    line = (f"manufacturing: buffer {rec['buffer']}, crew {rec['staff']}; "
            + ", ".join(f"{row['scenario'].split('_')[0]} {60 * row['throughput']['simulated']:.1f} u/h"
                        for row in check["scenarios"])
            + ("; confirmed" if check["confirmed"] else "; NOT confirmed"))
    return {"title": "Manufacturing optimisation (manufacturing_optimization)", "facts": facts,
            "images": [("Throughput and energy per unit against buffer size",
                        os.path.join(folder, "throughput_vs_buffer.png"))],
            "lead": "A Dask sweep of the line model over buffer sizes, crews and material shortages; a "
                    "statsmodels surrogate picked the configuration; confirmation runs checked it."}, [line]


def advisor_panels(home: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Advised limits (at submission, time-ordered replay) against the run time and memory jobs used.

    The limit is what the advisor would apply: the model's quantile plus its online margin, never
    under the floor (60 s, 256 MiB), and the request itself when the saving would be small.

    Uses the newest training folder's ``records.jsonl`` (what the training DAG trained on), else the
    history store plus the synthetic bootstrap.
    """
    import numpy as np

    from airflow_provider_hpcai.advisor.bootstrap import SYNTHETIC_DAG, synthetic_history
    from airflow_provider_hpcai.advisor.history import HistoryStore, JobRecord
    from airflow_provider_hpcai.advisor.online import run_online, table_from_records
    from airflow_provider_hpcai.advisor.pipeline import TRAINING_SPECS

    folders = glob.glob(os.path.join(home, "training", "*", "records.jsonl"))
    if folders:
        with open(max(folders, key=os.path.getmtime), encoding="utf-8") as handle:
            records = [JobRecord.from_dict(json.loads(line)) for line in handle if line.strip()]
    else:
        records = HistoryStore(home).records() + synthetic_history()
    panels, stats = [], {"jobs": len(records), "demo_jobs": sum(r.dag_id in CASE_DAGS for r in records)}
    for spec, unit, scale in ((TRAINING_SPECS[0], "s", 1.0), (TRAINING_SPECS[1], "MiB", 2.0**20)):
        table, kept = table_from_records(records, spec.name)
        if len(table) < 20:
            continue
        online = run_online(table, spec)
        test = (np.arange(len(table)) >= online.test_start) & online.predicted
        pred = np.asarray(online.limit, dtype=float)  # what the advisor would apply: floors, request when no saving
        demo = np.array([r.dag_id in CASE_DAGS for r in kept])
        groups = []
        for label, mask in ((f"bootstrap history ({SYNTHETIC_DAG})", test & ~demo), ("this demo's jobs", test & demo)):
            groups.append({"label": f"{label}: {int(mask.sum())}", "actual": table.value[mask].tolist(),
                           "predicted": pred[mask].tolist()})
        covered = float(np.mean(table.value[test] <= pred[test])) if test.any() else float("nan")
        stats[spec.name] = {"tested": int(test.sum()), "covered": covered, "quantile": spec.quantile,
                            "demo_tested": int((test & demo).sum())}
        if spec.name == "runtime":
            from airflow_provider_hpcai.advisor.energy import limit_savings

            # What the advised limits saved on this demo's jobs: reserved-but-unused core-hours and
            # their kWh (killed attempts counted), against the requests (advisor/energy.py).
            mine = test & demo
            stats["savings"] = limit_savings(np.asarray(table.procs, dtype=float)[mine], table.value[mine],
                                             table.request[mine], pred[mine])
        panels.append({"title": f"{'Run time' if spec.name == 'runtime' else 'Peak memory'}: "
                                f"{100 * covered:.0f} % of jobs within the advised limit (q={spec.quantile})",
                       "unit": unit, "scale": scale, "groups": groups})
    return panels, stats


def _advisor(home: str | None, out_dir: str) -> tuple[dict[str, Any], list[str]]:
    if not home or not os.path.isdir(home):
        return {"title": "Resource advisor", "missing": "no advisor home"}, ["advisor: no history"]
    from airflow_provider_hpcai.casestudies import plots

    panels, stats = advisor_panels(home)
    champion = os.path.join(home, "champion.json")
    facts = [("history used", f"{stats['jobs']} jobs, {stats['demo_jobs']} of them from this demo's case studies"),
             ("champion model", "exported (champion.json)" if os.path.exists(champion) else "none promoted")]
    for name in ("runtime", "memory"):
        if name in stats:
            s = stats[name]
            facts.append((f"{name}: jobs predicted at submission",
                          (f"{s['tested']} ({s['demo_tested']} from the demo); "
                           f"{100 * s['covered']:.1f} % within the advised limit")))
    saved = stats.get("savings")
    if saved is not None:
        facts.append(("saved on this demo's jobs (run time)",
                      (f"{saved['core_hours_saved']:.3f} core-hours and {1000 * saved['kwh_saved']:.2f} Wh of "
                       f"reserved-but-unused time against the requests ({saved['advised']} of {saved['jobs']} "
                       f"limits cut, {saved['killed']} would have been killed; power model of advisor/energy.py)")))
    images = []
    if panels:
        images.append(("Advisor: advised limits against what jobs used (time-ordered replay)",
                       plots.predicted_vs_actual(panels, os.path.join(out_dir, "advisor_predicted_vs_actual.png"))))
    line = "advisor: " + "; ".join(f"{n} {100 * stats[n]['covered']:.0f} % covered over {stats[n]['tested']} jobs"
                                   for n in ("runtime", "memory") if n in stats)
    if saved is not None:
        line += (f"; saved {saved['core_hours_saved']:.3f} core-h, {saved['kwh_saved']:.4f} kWh on "
                 f"{saved['jobs']} demo jobs")
    return {"title": "Resource advisor", "facts": facts, "images": images,
            "lead": "Trained by the hpcai_advisor_training DAG on the job history (the case studies' jobs and the "
                    "synthetic bootstrap). Each point is one job: the limit the advisor would have set before it ran "
                    "(from finished jobs only) against what it used. Seconds-long demo jobs sit at the floors "
                    "(60 s, 256 MiB) or keep their request."}, [line]


#: dag_id -> (the result file its last Dask/analysis task writes, the section builder)
SECTIONS = {"climate_adaptive": ("rainfall.json", _climate), "seismic_risk": ("hazard.json", _seismic),
            "manufacturing_optimization": ("result.json", _manufacturing)}


def case_section(dag_id: str, folder: str | None) -> tuple[dict[str, Any], list[str]]:
    """One case study's report section (and summary line) from its run folder."""
    name, builder = SECTIONS[dag_id]
    path = os.path.join(folder, name) if folder else None
    if not path or not os.path.exists(path):
        return {"title": dag_id, "missing": f"no {dag_id} result found (run the DAG first)"}, [f"{dag_id}: no result"]
    with open(path, encoding="utf-8") as handle:
        return builder(folder, json.load(handle))


def case_report(dag_id: str, folder: str) -> str:
    """``<folder>/report.html`` for one run of one case study (its DAG's last task)."""
    section, lines = case_section(dag_id, folder)
    return build_report(os.path.join(folder, "report.html"), f"{dag_id}: {os.path.basename(folder)}", [section],
                        subtitle="; ".join(lines))


def demo_report(results_root: str, advisor_home: str | None, out: str) -> tuple[str, list[str]]:
    """Build the demo's combined report (the newest run of each case study); returns its path and summary lines."""
    sections, lines = [], []
    parts = [case_section(dag_id, _latest(results_root, dag_id, name)) for dag_id, (name, _) in SECTIONS.items()]
    for part in [*parts, _advisor(advisor_home, os.path.dirname(os.path.abspath(out)))]:
        sections.append(part[0])
        lines.extend(part[1])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    build_report(out, "airflow-provider-hpcai: case-study demo", sections,
                 subtitle=f"Three workflows on the embedded local backend, analysed with Dask; {stamp}")
    return out, lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the case-study demo report.")
    parser.add_argument("--results", required=True, help="the case studies' results root")
    parser.add_argument("--advisor-home", default=None, help="the advisor home (history, training runs)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.results):
        print(f"error: no results folder {args.results}: run the case studies first", file=sys.stderr)
        return 2
    path, lines = demo_report(args.results, args.advisor_home, args.out)
    for line in lines:
        print("  " + line)
    print(f"Report: {os.path.abspath(path)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
