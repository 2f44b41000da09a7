"""Kill-budget calibration of the wall-time advisor on the shared SWF traces, leave-one-trace-out.

For every trace (plain or gzip) and every candidate setting, runs the time-ordered evaluation
(kill rate, worst window of 1,000 test jobs, waste cut and the energy of the waste for the
advisor and each baseline; with ``--schedule`` also the EASY replays). Candidates: the
exceedance calibration (q 0.93), the kill calibration (margins hold ``aim x budget``) for a few
steps and aims, and the guarded policy (``advisor/guard.py``) with a few settings. The setting
reported for a trace is chosen on the *other five* only: the largest mean waste cut among
settings whose mean kill rate and worst window are both within the budget on each of them (else
the lowest worst window). Prints a table and one JSON line.

    .venv/bin/python bench/bench_advisor_budget.py [--traces DIR] [--budget 0.05] [--jobs 2] [--schedule]
        [--only 'guarded,guarded ratio']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRACES = (
    "KTH-SP2-1996-2.1.swf",
    "LLNL-Atlas-2006-2.1-cln.swf",
    "HPC2N-2002-2.2-cln.swf.gz",
    "SDSC-SP2-1998-4.2-cln.swf.gz",
    "CTC-SP2-1996-3.1-cln.swf.gz",
    "SDSC-BLUE-2000-4.2-cln.swf.gz",
)
BASELINES = ("last2", "2x_last2", "1.2x_max20")


def trace_paths(traces: str) -> dict[str, str]:
    """The shared traces found under ``traces`` (name -> path); says which are missing."""
    paths = {n: os.path.join(traces, n) for n in TRACES if os.path.isfile(os.path.join(traces, n))}
    for name in TRACES:
        if name not in paths:
            print(f"skip {name}: not found under {traces}")
    return paths
# Power model of the energy figures: advisor/energy.py (DEFAULT_POWER; its constants' sources are there).


def candidates(budget: float, reference: bool = False) -> dict[str, dict]:
    # The kill calibration without guards (--calibration kills) is superseded (docs/advisor.md) and
    # no longer a candidate; exceedance q0.93 (the model before the guards) is a reference on request.
    out: dict[str, dict] = {"exceedance q0.93": {"calibration": "exceedance", "quantile": 0.93}} if reference else {}
    # The guarded policy (advisor/guard.py): per-user candidates, probation, in-flight cap, brake.
    # "guarded" is GuardSpec() as shipped: kill_penalty 1, aim 0.04, brake 0.85, in-flight 5,
    # abstain 0.85 (the setting with the largest mean cut within the budget on all six traces).
    out["guarded"] = {"calibration": "guarded", "guard": {}}
    out["guarded brake0.7"] = {"calibration": "guarded", "guard": {"brake": 0.7}}
    out["guarded penalty0.5 aim0.05"] = {"calibration": "guarded", "guard": {"kill_penalty": 0.5, "aim": 0.05}}
    out["guarded abstain0.7"] = {"calibration": "guarded", "guard": {"abstain_ratio": 0.7}}
    out["guarded model only"] = {"calibration": "guarded", "guard": {"max20_factor": 0.0}}
    # More history candidates: the user's jobs with the same request (1.2 x their max of 20) and
    # 1.5 x the user's max of the last 5.
    history = ("user_request_max20", "user_max5")
    out["guarded history"] = {"calibration": "guarded", "guard": {"extra_candidates": history}}
    out["guarded penalty0.5 aim0.05 history"] = {"calibration": "guarded", "guard": {
        "kill_penalty": 0.5, "aim": 0.05, "extra_candidates": history}}
    # Opt-in candidates (advisor/candidates.py), each chosen per user by the shadow nets: 1.2 x the
    # max of the user's last 20 run/request shares x the job's request; 1.2 x the max of the user's
    # last 20 jobs with the same cores; 1.1 and 1.5 x the user's max of 20 beside the 1.2.
    out["guarded ratio"] = {"calibration": "guarded", "guard": {"extra_candidates": ("user_ratio_max20",)}}
    out["guarded procs"] = {"calibration": "guarded", "guard": {"extra_candidates": ("user_procs_max20",)}}
    out["guarded factors"] = {"calibration": "guarded", "guard": {
        "extra_candidates": ("user_max20_x1.1", "user_max20_x1.5")}}
    # Job size: a job whose possible saving procs x (request - limit) is under 1 % of a machine-hour
    # keeps its request (a kill counts against the budget whatever the size); alone, then spending
    # the kills it frees on the candidates above and a one-success probation.
    out["guarded small0.01"] = {"calibration": "guarded", "guard": {"min_saving_share": 0.01}}
    out["guarded factors procs probation1 small0.01"] = {"calibration": "guarded", "guard": {
        "extra_candidates": ("user_max20_x1.1", "user_max20_x1.5", "user_procs_max20"),
        "probation_clear": 1, "min_saving_share": 0.01}}
    return out


def run_one(path: str, settings: dict, budget: float = 0.05) -> dict:
    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, load_trace
    from airflow_provider_hpcai.advisor.guard import GuardSpec
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.advisor.online import run_online

    data = load_trace(path)
    out = {}
    shared = None  # every guarded setting uses the same model loop (TargetSpec defaults, series = user)
    for label, s in settings.items():
        guarded = s["calibration"] == "guarded"
        spec = TargetSpec(name="runtime", quantile=s.get("quantile", 0.93), gamma=s.get("gamma", 0.03),
                          calibration="exceedance" if guarded else s["calibration"],
                          kill_budget=s.get("kill_budget", budget))
        guard = GuardSpec(kill_budget=budget, **s["guard"]) if guarded else None
        if guarded and shared is None:
            shared = run_online(data.table(by="user"), spec)
        r = evaluate_trace(data, spec=spec, guard=guard, schedule=False, online=shared if guarded else None)
        keys = ("kill_rate", "worst_window_kill_rate", "waste_cut", "energy_kwh", "energy_saved_kwh",
                "avebsld", "mean_wait_s")
        out[label] = {n: {k: p[k] for k in keys if k in p} for n, p in r["policies"].items()}
        if guarded:
            out[label]["_held"] = r["model"]["held"]
        out[label]["_seconds"] = r["seconds"]
    out["_jobs"] = len(data)
    return out


# What the scheduler plans with: a run-time quantile (None = the advisor's limit) or "last2"
# (Tsafrir's mean of the user's last two runs, EASY++'s predictor).
ESTIMATE_QUANTILES = (None, 0.5, 0.3, 0.2, "last2")


def run_schedule(path: str, setting: dict, budget: float) -> dict:
    """EASY replays of one trace under one guarded setting for each estimate quantile: the users'
    requests, the advisor's enforce (its limit kills, the estimate plans) and estimates only."""
    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, load_trace
    from airflow_provider_hpcai.advisor.guard import GuardSpec
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.advisor.online import run_online

    data = load_trace(path)
    spec = TargetSpec(name="runtime")
    guard = GuardSpec(kill_budget=budget, **setting.get("guard", {}))
    online = run_online(data.table(by="user"), spec)
    out: dict = {}
    for q in ESTIMATE_QUANTILES:
        kw = {"estimator": "last2"} if q == "last2" else {"estimate_quantile": q}
        r = evaluate_trace(data, spec=spec, guard=guard, online=online, sjf=not out or q == "last2",
                           replay=("advisor",) if out else ("users", "advisor"), **kw)
        if not out:
            out["users"] = {k: r["policies"]["users"][k] for k in ("avebsld", "mean_wait_s")}
            out["users_sjf"] = r["users_sjf"]
        out[str(q)] = {"enforce": {k: r["policies"]["advisor"][k] for k in ("avebsld", "mean_wait_s")},
                       "estimates_only": r["estimates_only"], "seconds": r["seconds"]}
        if "estimates_only_sjf" in r:
            out[str(q)]["estimates_only_sjf"] = r["estimates_only_sjf"]
    return out


def choose_estimate(sched: dict, names: list[str], mode: str) -> str:
    """The estimator with the lowest mean AVEbsld ratio against the users' requests over ``names``
    in one mode: ``enforce`` (the estimate plans beside the advisor's kill limit) or
    ``estimates_only`` (``estimate`` mode, ``--time-min``: the estimate plans, the request kills)."""
    ratio = lambda t, q: sched[t][q][mode]["avebsld"] / sched[t]["users"]["avebsld"]
    return min((str(q) for q in ESTIMATE_QUANTILES), key=lambda q: sum(ratio(t, q) for t in names))


def choose(results: dict, names: list[str], budget: float) -> str:
    """The setting with the largest mean waste cut among those whose mean kill rate *and* worst
    window are within the budget on each of ``names``; else the lowest worst window over them."""
    labels = [k for k in next(iter(results.values())) if not k.startswith("_")]
    adv = lambda t, c: results[t][c]["advisor"]
    ok = [c for c in labels if all(adv(t, c)["kill_rate"] <= budget and adv(t, c)["worst_window_kill_rate"] <= budget
                                   for t in names)]
    if ok:
        return max(ok, key=lambda c: sum(adv(t, c)["waste_cut"] for t in names))
    return min(labels, key=lambda c: max(adv(t, c)["worst_window_kill_rate"] for t in names))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", default=os.environ.get("HPCAI_TRACES", "/work/shared/traces"))
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reference", action="store_true",
                        help="also run the unguarded exceedance q0.93 model as a reference column (a refit per trace)")
    parser.add_argument("--schedule", action="store_true",
                        help="then run the EASY replays of the chosen guarded setting for each estimate quantile "
                             "(AVEbsld, mean wait; several minutes more)")
    parser.add_argument("--only", default="",
                        help="comma-separated setting labels to run (default: all); the folds choose among these")
    args = parser.parse_args()
    began = time.perf_counter()
    settings = candidates(args.budget, args.reference)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in settings]
        if unknown:
            parser.error(f"unknown settings {unknown}; known: {sorted(settings)}")
        settings = {k: v for k, v in settings.items() if k in wanted}
    paths = trace_paths(args.traces)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(run_one, p, settings, args.budget) for n, p in paths.items()}
        results = {n: f.result() for n, f in futures.items()}
    rows, summary = [], {}
    for name, r in results.items():
        others = [t for t in results if t != name]
        chosen = choose(results, others, args.budget) if others else "guarded"
        adv = r[chosen]["advisor"]
        within = [b for b in BASELINES if r[chosen][b]["kill_rate"] <= args.budget]
        best = max(within, key=lambda b: r[chosen][b]["waste_cut"]) if within else None
        exc = r["exceedance q0.93"]["advisor"] if "exceedance q0.93" in r else None
        summary[name] = {"chosen": chosen, "advisor": adv, "exceedance_q0.93": exc,
                         "best_baseline_within_budget": best,
                         "best_baseline": r[chosen][best] if best else None, "jobs": r["_jobs"],
                         "baselines": {b: r[chosen][b] for b in BASELINES},
                         "advisor_by_setting": {c: r[c]["advisor"] for c in settings},
                         "held": r[chosen].get("_held")}
        base = (f"{best} {100 * r[chosen][best]['kill_rate']:.1f} % / "
                f"{100 * r[chosen][best]['worst_window_kill_rate']:.1f} % / {100 * r[chosen][best]['waste_cut']:+.1f} %"
                if best else "none")
        rows.append(f"| {name} | {r['_jobs']} | {chosen} | {100 * adv['kill_rate']:.1f} % | "
                    f"{100 * adv['worst_window_kill_rate']:.1f} % | {100 * adv['waste_cut']:+.1f} % | "
                    f"{adv['energy_saved_kwh']:,.0f} | {base} |"
                    + (f" {100 * exc['kill_rate']:.1f} % / {100 * exc['worst_window_kill_rate']:.1f} % / "
                       f"{100 * exc['waste_cut']:+.1f} % |" if exc else ""))
    print(f"kill budget {100 * args.budget:g} %; setting chosen on the other traces (leave-one-trace-out):")
    head = ("| trace | jobs | setting (chosen on the other five) | kills | worst 1,000 | waste cut | energy saved kWh | "
            "best baseline within budget: kills / worst / cut |")
    if args.reference:
        head += " exceedance q0.93: kills / worst / cut |"
    print(head)
    print("|---" * (head.count(" | ") + 1) + "|")
    print("\n".join(rows))
    if args.schedule:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {n: pool.submit(run_schedule, paths[n], settings[summary[n]["chosen"]], args.budget)
                       for n in results if settings[summary[n]["chosen"]]["calibration"] == "guarded"}
            sched = {n: f.result() for n, f in futures.items()}
        print("\nEASY replays (AVEbsld, tau 10 s / mean wait), guarded setting as above; each mode's estimator "
              "chosen on the other traces:")
        print("| trace | users | enforce: estimator | enforce | vs users (AVEbsld / wait) | estimate mode: estimator | "
              "estimates only | vs users (AVEbsld) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, r in sched.items():
            others = [t for t in sched if t != name] or [name]
            qe, qo = choose_estimate(sched, others, "enforce"), choose_estimate(sched, others, "estimates_only")
            u, e, o = r["users"], r[qe]["enforce"], r[qo]["estimates_only"]
            summary[name]["schedule"] = {"enforce_estimator": qe, "estimate_mode_estimator": qo, "users": u,
                                         "enforce": e, "estimates_only": o, "by_quantile": r}
            wait = (f"{100 * (e['mean_wait_s'] / u['mean_wait_s'] - 1):+.1f} %" if u["mean_wait_s"] > 60
                    else f"{(e['mean_wait_s'] - u['mean_wait_s']) / 60:+.1f} min")
            print(f"| {name} | {u['avebsld']:.1f} / {u['mean_wait_s'] / 60:.0f} min | {qe} | "
                  f"{e['avebsld']:.1f} / {e['mean_wait_s'] / 60:.0f} min | "
                  f"{100 * (e['avebsld'] / u['avebsld'] - 1):+.1f} % / {wait} | {qo} | "
                  f"{o['avebsld']:.1f} / {o['mean_wait_s'] / 60:.0f} min | {100 * (o['avebsld'] / u['avebsld'] - 1):+.1f} % |")
        print("\nEASY++ side view (shortest-estimate-first backfilling; not what Slurm does): AVEbsld / mean wait")
        print("| trace | users, EASY | users, SJF backfill | estimates, SJF backfill (estimator) | vs users, EASY |")
        print("|---|---|---|---|---|")
        for name, r in sched.items():
            q = summary[name]["schedule"]["estimate_mode_estimator"]
            key = q if "estimates_only_sjf" in r[q] else "last2"
            u, us, o = r["users"], r["users_sjf"], r[key]["estimates_only_sjf"]
            print(f"| {name} | {u['avebsld']:.1f} / {u['mean_wait_s'] / 60:.0f} min | {us['avebsld']:.1f} / "
                  f"{us['mean_wait_s'] / 60:.0f} min | {o['avebsld']:.1f} / {o['mean_wait_s'] / 60:.0f} min ({key}) | "
                  f"{100 * (o['avebsld'] / u['avebsld'] - 1):+.1f} % |")
    print(json.dumps({"bench": "advisor_budget", "budget": args.budget, "settings": settings,
                      "traces": summary, "seconds": time.perf_counter() - began}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
