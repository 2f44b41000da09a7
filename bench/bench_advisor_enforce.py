"""Is there a kill budget at which ``enforce`` is no slower than the users' own requests?

For every shared trace (plain or gzip) and every kill budget in ``--budgets``, runs the shipped
guarded policy (``GuardSpec()`` with that budget) and the EASY replay of ``enforce``: the guarded
limit kills; the QuantReg q0.3 estimate plans (``--plans q0.3``, the estimator every
leave-one-out fold chose for enforce in ``bench_advisor_budget.py --schedule``; live, it needs
``advisor_enforce_time_min`` and ``advisor_time_min_soft``) or the limit itself plans
(``--plans limit``: ``enforce`` as shipped, no ``--time-min``). Prints, per trace and budget, kills, worst
1,000-job window, waste cut, AVEbsld and mean wait against the users' requests, and the *kill
wait floor*: the mean wait the lost attempts alone add (``evaluate.enforce_wait_bound``), which
no scheduler can take back. Then one JSON line.

    .venv/bin/python bench/bench_advisor_enforce.py [--traces DIR] [--budgets 0.05,0.02,0.01,0.005] [--plans q0.3|limit]
        [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_advisor_budget import trace_paths

PLANS = {"q0.3": 0.3, "limit": None}  # what the scheduler plans with -> evaluate_trace(estimate_quantile=...)


def sweep(path: str, budgets: list[float], plans: str = "q0.3") -> dict:
    """The enforce replay of one trace at each kill budget (one model loop, shared by all budgets)."""
    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, load_trace
    from airflow_provider_hpcai.advisor.guard import GuardSpec
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.advisor.online import run_online

    data = load_trace(path)
    spec = TargetSpec(name="runtime")
    online = run_online(data.table(by="user"), spec)
    out: dict = {"jobs": len(data), "budgets": {}}
    for budget in budgets:
        r = evaluate_trace(data, spec=spec, guard=GuardSpec(kill_budget=budget), online=online, sjf=False,
                           replay=("users", "advisor"), estimate_quantile=PLANS[plans])
        users, adv = r["policies"]["users"], r["policies"]["advisor"]
        out.setdefault("users", {k: users[k] for k in ("avebsld", "mean_wait_s")})  # the same for every budget
        out["budgets"][str(budget)] = {
            k: adv[k] for k in ("kill_rate", "worst_window_kill_rate", "waste_cut", "avebsld", "mean_wait_s",
                                "kill_wait_floor_s", "energy_saved_kwh")}
        out["budgets"][str(budget)]["no_slower"] = (adv["avebsld"] <= users["avebsld"]
                                                    and adv["mean_wait_s"] <= users["mean_wait_s"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", default=os.environ.get("HPCAI_TRACES", "/work/shared/traces"))
    parser.add_argument("--budgets", default="0.05,0.02,0.01,0.005")
    parser.add_argument("--plans", choices=sorted(PLANS), default="q0.3",
                        help="what the scheduler plans with beside the guarded limit (default q0.3)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--budgets must be comma-separated numbers, got {args.budgets!r}")
    if not budgets or any(not 0 < b < 1 for b in budgets):
        parser.error(f"--budgets must be shares between 0 and 1, got {args.budgets!r}")
    began = time.perf_counter()
    paths = trace_paths(args.traces)
    if not paths:
        print(f"no shared trace under {args.traces}: pass --traces DIR (or set HPCAI_TRACES)", file=sys.stderr)
        return 1
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(sweep, p, budgets, args.plans) for n, p in paths.items()}
        results = {n: f.result() for n, f in futures.items()}
    print(f"enforce (guarded limit kills, {args.plans} plans) against the users' requests, EASY replay of the test jobs:")
    print("| trace | users: AVEbsld / wait | budget | kills / worst 1,000 | waste cut | enforce: AVEbsld / wait "
          "| kill wait floor | no slower |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        u = r["users"]
        for budget, a in r["budgets"].items():
            print(f"| {name} | {u['avebsld']:.2f} / {u['mean_wait_s'] / 60:.1f} min | {100 * float(budget):g} % | "
                  f"{100 * a['kill_rate']:.2f} % / {100 * a['worst_window_kill_rate']:.1f} % | "
                  f"{100 * a['waste_cut']:+.1f} % | {a['avebsld']:.2f} / {a['mean_wait_s'] / 60:.1f} min | "
                  f"{a['kill_wait_floor_s'] / 60:.1f} min | {'yes' if a['no_slower'] else 'no'} |")
    print(json.dumps({"bench": "advisor_enforce", "budgets": budgets, "plans": args.plans, "traces": results,
                      "seconds": time.perf_counter() - began}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
