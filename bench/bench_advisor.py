"""Benchmark of the resource advisor (targets.md, "Resource advisor").

Runs the time-ordered wall-time evaluation with EASY-backfilling replays on the shared SWF
traces (a missing trace is skipped), the synthetic memory evaluation, and the cost of the
Airflow task policy per task (p50/p99). Prints a table, human lines and one JSON line.

    .venv/bin/python bench/bench_advisor.py [--traces DIR] [--quantile 0.93]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRACES = ("KTH-SP2-1996-2.1.swf", "LLNL-Atlas-2006-2.1-cln.swf")


# The opt-in guard setting of docs/advisor.md ("A setting that closes the waste-cut gaps"), as a site sets it.
OPT_IN_SITE = {
    "AIRFLOW__HPCAI__ADVISOR_GUARD_EXTRA_CANDIDATES": "user_max20_x1.1,user_max20_x1.5,user_procs_max20",
    "AIRFLOW__HPCAI__ADVISOR_GUARD_PROBATION": "1",
    "AIRFLOW__HPCAI__ADVISOR_GUARD_MIN_SAVING_SHARE": "0.01",
    "AIRFLOW__HPCAI__ADVISOR_MACHINE_CORES": "64",
}


def policy_cost(repeats: int = 2000, site: dict[str, str] | None = None) -> dict[str, float]:
    """p50/p99 of task_policy on a real BaseOperator with a cached champion, and of the compact predict.

    :param site: extra ``AIRFLOW__HPCAI__*`` settings in force while measuring (removed afterwards).
    """
    from unittest import mock

    with mock.patch.dict(os.environ, site or {}):
        return _policy_cost(repeats)


def _policy_cost(repeats: int) -> dict[str, float]:
    from airflow.sdk import BaseOperator

    from airflow_provider_hpcai.advisor import live_guard
    from airflow_provider_hpcai.advisor.cache import clear_caches, write_champion
    from airflow_provider_hpcai.advisor.history import HistoryStore, record_from_accounting
    from airflow_provider_hpcai.advisor.models import TargetSpec
    from airflow_provider_hpcai.advisor.online import train_compact
    from airflow_provider_hpcai.policy import airflow_policy, settings
    from airflow_provider_hpcai.resources import Resources

    records = []
    for i in range(400):
        nx = (256, 512, 1024)[i % 3]
        records.append(record_from_accounting(
            {"job_id": str(i), "state": "COMPLETED", "elapsed_seconds": 60.0 * nx / 256 * (1 + (i % 7) / 20),
             "max_rss_bytes": 1e9 * nx / 256, "requested": Resources(ntasks=4, memory="16G", time_limit=7200).to_dict(),
             "submit_time": 1.7e9 + 600 * i},
            {"dag_id": "sim", "task_id": f"t{i % 8}", "owner": "alice", "nx": nx}))
    specs = (TargetSpec(name="runtime"), TargetSpec(name="memory", quantile=0.99, alpha=0.008,
                                                     floor=256 * 1024.0**2, abstain_ratio=0.9))
    model, _ = train_compact(records, specs)
    home = tempfile.mkdtemp(prefix="hpcai-bench-")
    write_champion(home, model)
    os.environ["AIRFLOW__HPCAI__ADVISOR_MODE"] = "enforce"
    os.environ["AIRFLOW__HPCAI__ADVISOR_HOME"] = home
    settings.reset_settings()
    clear_caches()

    class SimOperator(BaseOperator):
        def __init__(self, *, job_resources, **kwargs):
            super().__init__(**kwargs)
            self.job_resources = job_resources

        def advisor_key(self):
            return {"dag_id": "sim", "task_id": self.task_id, "owner": "alice", "nx": 512}

        def execute(self, context):
            return None

    request = Resources(ntasks=4, memory="16G", time_limit=7200)
    task = SimOperator(task_id="t3", job_resources=request)
    # The guard advises a series only once it has seen one of its jobs end: run one through it,
    # as the operator does (admit just before submitting; the finished job joins the history).
    airflow_policy.task_policy(task)  # no outcome yet: the guard keeps the request
    resources, bind = live_guard.admit(task.hpcai_decision, task.job_resources)
    bind("1")
    HistoryStore(home).add(record_from_accounting(
        {"job_id": "1", "state": "COMPLETED", "elapsed_seconds": 130.0, "requested": resources.to_dict()},
        task.advisor_key()))
    live_guard.clear_views()
    task.job_resources = request
    airflow_policy.task_policy(task)  # warm: first read of champion.json and of the guard's state
    samples, predicts = [], []
    for _ in range(repeats):
        task.job_resources = request
        t0 = time.perf_counter()
        airflow_policy.task_policy(task)
        samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.predict(task.advisor_key(), request)
        predicts.append(time.perf_counter() - t0)
    samples.sort()
    predicts.sort()
    assert task.hpcai_decision["applied"]["time_limit"] < 7200, task.hpcai_decision
    return {
        "policy_p50_us": 1e6 * samples[len(samples) // 2],
        "policy_p99_us": 1e6 * samples[int(0.99 * len(samples))],
        "predict_p50_us": 1e6 * predicts[len(predicts) // 2],
        "predict_p99_us": 1e6 * predicts[int(0.99 * len(predicts))],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", default=os.environ.get("HPCAI_TRACES", "/work/shared/traces"))
    parser.add_argument("--quantile", type=float, default=0.93)
    args = parser.parse_args()

    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, format_table
    from airflow_provider_hpcai.advisor.memsim import evaluate_memory

    began = time.perf_counter()
    results, skipped = [], []
    for name in TRACES:
        path = os.path.join(args.traces, name)
        if not os.path.isfile(path):
            skipped.append(name)
            print(f"skip {name}: not found under {args.traces}")
            continue
        results.append(evaluate_trace(path, quantile=args.quantile))
    if results:
        print("kills / waste cut vs users / AVEbsld (tau=10 s), EASY backfilling, killed jobs resubmitted:")
        print(format_table(results))
    for r in results:
        users, adv, est = r["policies"]["users"], r["policies"]["advisor"], r["estimates_only"]
        m = r["model"]
        print(f"{r['trace']}: advisor kills {100 * adv['kill_rate']:.1f} %, waste cut {100 * adv['waste_cut']:+.1f} %, "
              f"tightened {100 * adv['tightened_share']:.0f} % of jobs; exceedance {100 * m['exceedance']:.1f} % "
              f"(target {100 * m['target_rate']:.1f} %); AVEbsld users {users['avebsld']:.2f} / limits "
              f"{adv['avebsld']:.2f} / estimates only {est['avebsld']:.2f}; mean wait users "
              f"{users['mean_wait_s']:.0f} s / limits {adv['mean_wait_s']:.0f} s / estimates {est['mean_wait_s']:.0f} s; "
              f"bar {r['bar']}; {r['seconds']:.1f} s")
    memory = evaluate_memory()
    a, v, mt = memory["advisor"], memory["vpa_p90_15"], memory["advisor_at_vpa_oom_rate"]
    print(f"memory (synthetic, mean efficiency {100 * memory['mean_efficiency']:.1f} %): advisor unused "
          f"-{100 * a['unused_cut_vs_users']:.1f} % vs users at {100 * a['oom_rate']:.2f} % OOM; VPA p90+15 % "
          f"-{100 * v['unused_cut_vs_users']:.1f} % at {100 * v['oom_rate']:.2f} % OOM; advisor at VPA's OOM rate "
          f"({100 * mt['oom_rate']:.2f} %): {100 * mt['unused_cut_vs_vpa']:.1f} % less waste than VPA; bar {memory['bar']}")
    cost = policy_cost()
    print(f"policy cost per task: p50 {cost['policy_p50_us']:.1f} us, p99 {cost['policy_p99_us']:.1f} us "
          f"(compact predict p50 {cost['predict_p50_us']:.1f} us)")
    cost_opt_in = policy_cost(site=OPT_IN_SITE)
    print(f"policy cost per task with the opt-in guard setting: p50 {cost_opt_in['policy_p50_us']:.1f} us, "
          f"p99 {cost_opt_in['policy_p99_us']:.1f} us")
    summary = {
        "bench": "advisor",
        "traces": {
            r["trace"]: {
                "policies": r["policies"], "estimates_only": r["estimates_only"], "model": r["model"],
                "bar": r["bar"], "seconds": r["seconds"], "jobs": r["jobs"], "test_jobs": r["test_jobs"],
            }
            for r in results
        },
        "skipped": skipped,
        "memory": memory,
        "policy_cost": cost,
        "policy_cost_opt_in": cost_opt_in,
        "seconds": time.perf_counter() - began,
    }
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
