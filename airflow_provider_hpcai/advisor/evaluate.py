"""Time-ordered evaluation of wall-time advice on an SWF trace (see ``docs/advisor.md``).

Protocol (``targets.md``): jobs in submission order; the first 30 % warm the model up and
run with the users' requests; the rest are the test set. For each policy (the users'
requests, Tsafrir's mean of the last two runs, twice that, 1.2 x the max of the user's last
20, and the advisor) every test job gets a kill limit, never above its request. A job that
runs past its limit is killed, charged its whole wasted attempt and resubmitted with the
user's request. Figures per policy:

* kill rate: share of test jobs killed; worst window: the highest kill rate over any
  ``kill_window`` (default 1,000) consecutive test jobs;
* waste cut: ``1 - W / W_users`` with ``W`` the core-hours reserved and not used
  (``procs x (limit - run)``; a killed job adds ``procs x limit``);
* AVEbsld and mean wait from an EASY-backfilling replay with those limits; for the advisor
  also a replay where predictions are only the scheduler's estimates (no kills).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from airflow_provider_hpcai.advisor.energy import DEFAULT_POWER, PowerModel, waste_energy_kwh
from airflow_provider_hpcai.advisor.guard import GuardSpec, guarded_limits
from airflow_provider_hpcai.advisor.models import TargetSpec
from airflow_provider_hpcai.advisor.online import JobTable, OnlineResult, run_online
from airflow_provider_hpcai.advisor.replay import bounded_slowdown, easy_backfill
from airflow_provider_hpcai.advisor.swf import SwfTrace, read_swf, swf_arrays

__all__ = ["BASELINES", "KILL_BAR", "KILL_WINDOW", "TraceData", "evaluate_trace", "load_trace"]

KILL_BAR = 0.05
KILL_WINDOW = 1000  # test jobs per rolling window for the worst-window kill rate
BASELINES = ("users", "last2", "2x_last2", "1.2x_max20")
ESTIMATORS = ("quantile", "last2")
TAU = 10.0


@dataclasses.dataclass
class TraceData:
    """A trace's valid jobs in submission order, as arrays."""

    name: str
    submit: Any
    run: Any  # run time capped at the request
    request: Any
    procs: Any
    user: Any
    capacity: int
    series: Any  # user and application (executable) codes; the user alone when unknown
    skipped_lines: int
    dropped_jobs: int
    background: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.submit)

    def table(self, by: str = "application") -> JobTable:
        """The runtime :class:`JobTable`, finish = submit + run (queue wait unknown).

        :param by: ``application`` (series = user and executable, the user where unknown) or
            ``user`` (series = user).
        """
        series = self.user if by == "user" else self.series
        return JobTable(self.submit, self.submit + self.run, series, self.run, self.request, self.procs)


def load_trace(source: str | os.PathLike[str] | SwfTrace, name: str | None = None) -> TraceData:
    """Valid jobs (known submit, run > 0, processors > 0, request > 0) of an SWF trace."""
    import numpy as np

    trace = source if isinstance(source, SwfTrace) else read_swf(source)
    cols = swf_arrays(trace)
    procs = np.where(cols["requested_processors"] > 0, cols["requested_processors"], cols["allocated_processors"])
    ok = (cols["submit_time"] >= 0) & (cols["run_time"] > 0) & (procs > 0) & (cols["requested_time"] > 0)
    order = np.argsort(cols["submit_time"][ok], kind="stable")
    pick = lambda a: a[ok][order]
    capacity = trace.max_processors or int(procs[ok].max())
    request = pick(cols["requested_time"])
    # Jobs that ran but whose request is unknown are not advised, but they load the machine:
    # they run in the scheduling replay under the partition default (the 99th percentile of the
    # known requests, or their run time when longer) and are never killed.
    other = (cols["submit_time"] >= 0) & (cols["run_time"] > 0) & (procs > 0) & ~ok
    default = float(np.percentile(request, 99)) if len(request) else 0.0
    background = {
        "submit": cols["submit_time"][other],
        "procs": np.minimum(procs[other], capacity),
        "run": cols["run_time"][other],
        "limit": np.maximum(cols["run_time"][other], default),
    }
    _, user = np.unique(pick(cols["user_id"]), return_inverse=True)
    _, series = np.unique(np.stack([pick(cols["user_id"]), pick(cols["executable"])], axis=1), axis=0,
                          return_inverse=True)
    return TraceData(
        name=name or (os.path.basename(os.fspath(source)) if not isinstance(source, SwfTrace) else "trace"),
        submit=pick(cols["submit_time"]),
        run=np.minimum(pick(cols["run_time"]), request),
        request=request,
        procs=np.minimum(pick(procs), capacity),
        user=user.astype(np.int64),
        capacity=int(capacity),
        series=series.ravel().astype(np.int64),
        skipped_lines=trace.skipped,
        dropped_jobs=int((~ok).sum()),
        background=background,
    )


def baseline_limits(data: TraceData, test_start: int) -> dict[str, Any]:
    """Kill limits of the baselines for every job (the request during warm-up or without history)."""
    import numpy as np

    from airflow_provider_hpcai.advisor.features import FEATURES, history_features

    t = dataclasses.replace(data.table(), series=data.user)  # the baselines look at the user's jobs
    X = history_features(t.submit, t.finish, t.series, t.value, t.request, t.procs)
    has = X[:, FEATURES.index("has_hist")] > 0
    col = lambda name: np.exp(X[:, FEATURES.index(name)])
    warm = np.arange(len(data)) < test_start
    out = {"users": data.request.copy()}
    for name, guess in (
        ("last2", col("log_mean_last2")),
        ("2x_last2", 2.0 * col("log_mean_last2")),
        ("1.2x_max20", 1.2 * col("log_max_last20")),
    ):
        out[name] = np.where(has & ~warm, np.minimum(guess, data.request), data.request)
    return out


def user_max20(data: TraceData) -> Any:
    """The max run time of each job's user's last 20 finished jobs (NaN without history)."""
    import numpy as np

    from airflow_provider_hpcai.advisor.features import FEATURES, history_features

    t = data.table(by="user")
    X = history_features(t.submit, t.finish, t.series, t.value, t.request, t.procs)
    has = X[:, FEATURES.index("has_hist")] > 0
    return np.where(has, np.exp(X[:, FEATURES.index("log_max_last20")]), np.nan)


def extra_candidate_limits(data: TraceData, names: tuple[str, ...]) -> list[Any]:
    """The guard's extra history candidates (:data:`~.guard.EXTRA_CANDIDATES`), NaN without history."""
    from airflow_provider_hpcai.advisor.candidates import history_candidate
    from airflow_provider_hpcai.advisor.guard import EXTRA_CANDIDATES

    return [history_candidate(submit=data.submit, run=data.run, request=data.request, procs=data.procs,
                              user=data.user, kind=kind, feature=feature, factor=factor)
            for kind, feature, factor in (EXTRA_CANDIDATES[name] for name in names)]


def worst_window_rate(flags: Any, window: int) -> float:
    """The highest share of ``True`` over any ``window`` consecutive entries (sliding by one).

    With fewer entries than ``window``, the share over all of them; 0 when there are none.
    """
    import numpy as np

    flags = np.asarray(flags, dtype=float)
    if window < 1:
        raise ValueError(f"the kill window must be at least 1 job, got {window}")
    if len(flags) == 0:
        return 0.0
    if len(flags) <= window:
        return float(flags.mean())
    total = np.concatenate([[0.0], np.cumsum(flags)])
    return float((total[window:] - total[:-window]).max() / window)


def limit_figures(
    data: TraceData, limit: Any, test: Any, *, kill_window: int = KILL_WINDOW, power: PowerModel = DEFAULT_POWER
) -> dict[str, float]:
    """Kill rate, worst rolling-window kill rate, wasted core-hours and their energy
    (:mod:`.energy`: killed attempts at active power, unused reservations at idle power)
    of a set of limits over the test jobs.

    A job is killed when it runs past its limit (never above its request). The worst window is
    the highest kill rate over any ``kill_window`` consecutive test jobs in submission order.
    ``kill_wait_floor_s`` is the mean wait the kills alone add whatever the scheduler does: a
    killed job's wait includes its lost attempt, so an EASY replay of these limits waits at least
    that long on average (:func:`enforce_wait_bound`).
    """
    import numpy as np

    run, req, procs = data.run[test], data.request[test], data.procs[test]
    lim = np.minimum(limit[test], req)
    killed = run > lim
    waste_users = float(np.sum(procs * (req - run)))
    waste = float(np.sum(np.where(killed, procs * lim + procs * (req - run), procs * (lim - run))))
    killed_hours = float(np.sum(np.where(killed, procs * lim, 0.0))) / 3600.0
    unused_hours = waste / 3600.0 - killed_hours
    return {
        "kill_rate": float(killed.mean()) if len(killed) else 0.0,
        "worst_window_kill_rate": worst_window_rate(killed, kill_window),
        "kill_window": int(kill_window),
        "waste_core_hours": waste / 3600.0,
        "waste_cut": 1.0 - waste / waste_users if waste_users > 0 else 0.0,
        "tightened_share": float((lim < req).mean()),
        "killed_core_hours": killed_hours,
        "unused_core_hours": unused_hours,
        "energy_kwh": waste_energy_kwh(killed_hours, max(unused_hours, 0.0), power=power),
        "kill_wait_floor_s": float(np.where(killed, lim, 0.0).sum() / len(killed)) if len(killed) else 0.0,
    }


def enforce_wait_bound(users: dict[str, float], advisor: dict[str, float]) -> dict[str, Any]:
    """Whether the advisor's kills alone already make ``enforce`` wait longer than the users' requests.

    Every killed job waits at least its lost attempt, so ``enforce``'s mean wait is at least
    ``kill_wait_floor_s``; when that is above the users' own mean wait (a nearly idle machine),
    no scheduler and no estimate can make ``enforce`` as fast at this kill rate.

    :param users: the users' requests' figures (with ``mean_wait_s`` from the replay).
    :param advisor: the advisor's figures (with ``kill_wait_floor_s``).
    """
    users_wait, floor = users["mean_wait_s"], advisor["kill_wait_floor_s"]
    return {"users_mean_wait_s": users_wait, "kill_wait_floor_s": floor, "reachable": floor <= users_wait}


def schedule_figures(
    data: TraceData, limit: Any, estimate: Any, test: Any, *, backfill_order: str = "fcfs"
) -> dict[str, float]:
    """AVEbsld (tau = 10 s) and mean wait of an EASY replay with these limits and estimates.

    Background jobs (unknown request) run alongside; figures are over the test jobs only.
    ``backfill_order="sjf"`` backfills shortest estimate first (EASY++).
    """
    import numpy as np

    bg = data.background or {k: np.zeros(0) for k in ("submit", "procs", "run", "limit")}
    n = len(data)
    result = easy_backfill(
        np.concatenate([data.submit, bg["submit"]]),
        np.concatenate([data.procs, bg["procs"]]),
        np.concatenate([data.run, bg["run"]]),
        np.concatenate([limit, bg["limit"]]),
        np.concatenate([estimate, bg["limit"]]),
        data.capacity,
        np.concatenate([data.request, bg["limit"]]),
        backfill_order=backfill_order,
    )
    response = (result.end[:n] - data.submit)[test]
    run = data.run[test]
    return {
        "avebsld": float(bounded_slowdown(response, run, TAU).mean()),
        "mean_wait_s": float((response - run).mean()),
    }


def evaluate_trace(
    source: str | os.PathLike[str] | SwfTrace | TraceData,
    *,
    quantile: float = 0.93,
    spec: TargetSpec | None = None,
    schedule: bool = True,
    refit_every: int | None = None,
    kill_window: int = KILL_WINDOW,
    calibration: str = "exceedance",
    kill_budget: float = KILL_BAR,
    guard: GuardSpec | None = None,
    power: PowerModel = DEFAULT_POWER,
    estimate_quantile: float | None = None,
    replay: tuple[str, ...] | None = None,
    estimator: str = "quantile",
    estimate_mode: str | None = None,
    sjf: bool = True,
    online: OnlineResult | None = None,
) -> dict[str, Any]:
    """Run the whole wall-time evaluation on one trace.

    :param source: an SWF path, a parsed trace, or :class:`TraceData`.
    :param quantile: the quantile the advisor's QuantReg fits (its kill-rate target is ``1 - quantile``).
    :param spec: full model settings (overrides ``quantile``).
    :param schedule: also run the EASY-backfilling replays (the slow part).
    :param kill_window: test jobs per rolling window for each policy's worst-window kill rate.
    :param calibration: ``exceedance`` (the margins hold ``1 - quantile`` of jobs above prediction)
        , ``kills`` (they hold ``kill_budget`` of jobs killed under the advised limit)
        or ``guarded`` (the per-user guarded policy of :mod:`.guard`, series = user).
    :param kill_budget: the site's kill budget for ``calibration="kills"`` and ``guarded``.
    :param guard: settings of the guarded policy (default :class:`GuardSpec` with ``kill_budget``).
    :param power: the power model that turns wasted core-hours into kWh (:mod:`.energy`).
    :param estimate_quantile: the quantile of run time the scheduler plans with (QuantReg, series
        = user, no margin), in the estimates-only replay and, for the advisor, beside its kill
        limit in the enforce replay; ``None``: the advisor's limit (prediction + margin) plans.
    :param replay: the policies to replay when ``schedule`` (default all; the estimates-only
        replay always runs).
    :param estimator: what the scheduler plans with beside the advisor's enforce limit:
        ``quantile`` (``estimate_quantile`` as above) or ``last2`` (Tsafrir's mean of the user's
        last two run times, the EASY++ predictor; floor ``spec.floor``, never above the request,
        the request without history).
    :param estimate_mode: the estimator of the estimates-only replay (``estimate`` mode,
        ``--time-min``): ``quantile`` or ``last2``; ``None``: the same estimate as enforce.
    :param sjf: also replay the users' requests and the estimates with shortest-estimate-first
        backfilling (EASY++'s order; ``users_sjf``, ``estimates_only_sjf``).
    :param online: the guarded policy's model loop already run on this data and ``spec``
        (:func:`~.online.run_online`, series = user), to compare settings without refitting.
    :return: figures per policy, the advisor's calibration, and whether it passes the bar.
    """
    import numpy as np

    began = time.perf_counter()
    data = source if isinstance(source, TraceData) else load_trace(source)
    guarded = calibration == "guarded" or guard is not None
    if guarded:
        guard = guard or GuardSpec(kill_budget=kill_budget)
        spec = spec or TargetSpec(name="runtime", quantile=quantile)
        if online is None:
            online = run_online(data.table(by="user"), spec, refit_every=refit_every)
    else:
        spec = spec or TargetSpec(name="runtime", quantile=quantile, calibration=calibration,
                                  kill_budget=kill_budget)
        online = run_online(data.table(), spec, refit_every=refit_every)
    assert online is not None
    test = np.arange(len(data)) >= online.test_start
    limits = baseline_limits(data, online.test_start)
    estimate: Any = None
    for given in (estimator, estimate_mode or estimator):
        if given not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, not {given!r}")
    estimate_only: Any = None
    if schedule:
        estimate = _estimate(data, spec, online, limits, test, estimator, estimate_quantile, refit_every)
        estimate_only = estimate
        if estimate_mode is not None and estimate_mode != estimator:
            estimate_only = _estimate(data, spec, online, limits, test, estimate_mode, estimate_quantile, refit_every)
    held: dict[str, int] | None = None
    if guarded:
        assert guard is not None
        result_g = guarded_limits(
            submit=data.submit, run=data.run, request=data.request, procs=data.procs, series=data.user,
            raw=online.raw, max20=user_max20(data), test_start=online.test_start, guard=guard,
            gamma=spec.gamma, series_gamma=spec.series_gamma, min_obs=spec.min_obs, floor=spec.floor,
            extra=extra_candidate_limits(data, guard.extra_candidates), capacity=data.capacity,
        )
        limits["advisor"] = np.where(test, result_g.limit, data.request)
        held = result_g.held
    else:
        limits["advisor"] = np.where(test, online.limit, data.request)
    policies: dict[str, dict[str, Any]] = {}
    for name, limit in limits.items():
        policies[name] = limit_figures(data, limit, test, kill_window=kill_window, power=power)
        if schedule and (replay is None or name in replay):
            planned = limit
            if name == "advisor" and (estimate_quantile is not None or estimator == "last2"):
                planned = np.minimum(estimate, limit)  # enforce: the limit kills, the estimate plans
            policies[name].update(schedule_figures(data, limit, planned, test))
    for figures in policies.values():
        figures["energy_saved_kwh"] = policies["users"]["energy_kwh"] - figures["energy_kwh"]
    if guarded:
        assert guard is not None
        adv = policies["advisor"]
        exceed = adv["kill_rate"]
        model = {"spec": {**spec.to_dict(), "calibration": "guarded"}, "guard": guard.to_dict(), "refits": online.refits,
                 "exceedance": exceed, "target_rate": guard.kill_budget, "held": held,
                 "calibrated": adv["kill_rate"] <= guard.kill_budget
                 and adv["worst_window_kill_rate"] <= guard.kill_budget}
    else:
        exceed = float(online.exceeded[test & online.predicted].mean())
        model = {"spec": spec.to_dict(), "refits": online.refits, "exceedance": exceed,
                 "target_rate": spec.target_rate, "calibrated": abs(exceed - spec.target_rate) <= 0.015}
    result: dict[str, Any] = {
        "trace": data.name,
        "jobs": len(data),
        "test_jobs": int(test.sum()),
        "kill_window": int(kill_window),
        "capacity": data.capacity,
        "skipped_lines": data.skipped_lines,
        "model": model,
        "policies": policies,
        "power_model": power.to_dict(),
    }
    if schedule:
        if "mean_wait_s" in policies["users"]:
            result["enforce_wait_bound"] = enforce_wait_bound(policies["users"], policies["advisor"])
        result["estimates_only"] = schedule_figures(data, data.request, estimate_only, test)
        result["estimate_quantile"] = estimate_quantile
        result["estimator"] = estimator
        result["estimate_mode"] = estimate_mode or estimator
        if sjf:
            result["users_sjf"] = schedule_figures(data, data.request, data.request, test, backfill_order="sjf")
            result["estimates_only_sjf"] = schedule_figures(data, data.request, estimate_only, test,
                                                            backfill_order="sjf")
    result["bar"] = check_bar(result)
    result["seconds"] = time.perf_counter() - began
    return result


def _estimate(
    data: TraceData, spec: TargetSpec, online: OnlineResult, limits: dict[str, Any], test: Any, estimator: str,
    quantile: float | None, refit_every: int | None,
) -> Any:
    """The run time the scheduler plans with for each job (the request outside the test set)."""
    import numpy as np

    if estimator == "last2":
        estimate = np.maximum(limits["last2"], spec.floor)
    elif quantile is not None:
        # A lower quantile of run time (never below the floor, never above the request); no job
        # is killed at it, so it may be bold.
        est_online = run_online(data.table(by="user"), dataclasses.replace(spec, quantile=quantile),
                                refit_every=refit_every)
        estimate = np.maximum(np.exp(np.minimum(est_online.raw, 700.0)), spec.floor)
    else:
        estimate = np.exp(np.minimum(online.raw + online.margin, 700.0))
    return np.where(test & np.isfinite(estimate), np.minimum(estimate, data.request), data.request)


def check_bar(result: dict[str, Any]) -> dict[str, Any]:
    """The bar from targets.md: kills <= 5 %, a bigger waste cut than every baseline that also
    stays <= 5 %, and AVEbsld no worse than the best such baseline."""
    policies = result["policies"]
    advisor = policies["advisor"]
    eligible = [policies[b] for b in BASELINES if policies[b]["kill_rate"] <= KILL_BAR]
    checks = {
        "kills_within_bar": advisor["kill_rate"] <= KILL_BAR,
        "worst_window_within_bar": advisor.get("worst_window_kill_rate", 0.0) <= KILL_BAR,
        "beats_baseline_waste": all(advisor["waste_cut"] > b["waste_cut"] for b in eligible),
    }
    if "avebsld" in advisor:
        replayed = [b["avebsld"] for b in eligible if "avebsld" in b]
        if replayed:
            checks["avebsld_no_worse"] = advisor["avebsld"] <= min(replayed)
        users = policies["users"]
        if "avebsld" in users:
            checks["enforce_no_slower_than_users"] = (advisor["avebsld"] <= users["avebsld"]
                                                      and advisor["mean_wait_s"] <= users["mean_wait_s"])
        est = result.get("estimates_only")
        if est and "avebsld" in users:
            checks["estimates_improve_avebsld"] = est["avebsld"] < users["avebsld"]
    checks["calibrated"] = result["model"]["calibrated"]
    checks["passed"] = all(checks.values())
    return checks


def format_table(results: list[dict[str, Any]]) -> str:
    """A human table like the one in targets.md per policy: kill rate (worst rolling window of
    ``kill_window`` test jobs) / waste cut / AVEbsld."""
    names = [*BASELINES, "advisor"]
    lines = ["| trace | " + " | ".join(names) + " | estimates only |", "|---" * (len(names) + 2) + "|"]
    for r in results:
        cells = []
        for name in names:
            p = r["policies"][name]
            bsld = f" / {p['avebsld']:.1f}" if "avebsld" in p else ""
            worst = p.get("worst_window_kill_rate")
            worst_cell = f" (worst {100 * worst:.1f} %)" if worst is not None else ""
            cells.append(f"{100 * p['kill_rate']:.1f} %{worst_cell} / {100 * p['waste_cut']:+.1f} %{bsld}")
        est = r.get("estimates_only")
        cells.append(f"0 % / AVEbsld {est['avebsld']:.1f}" if est else "-")
        lines.append(f"| {r['trace']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
