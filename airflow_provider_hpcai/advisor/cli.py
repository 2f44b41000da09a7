"""``hpcai advisor ...`` subcommands (registered by the provider's CLI through :func:`add_parser`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_hpcai.advisor.guard import GuardSpec

__all__ = ["add_parser"]

DEFAULT_ESTIMATE_QUANTILE = 0.3  # chosen leave-one-trace-out (bench/bench_advisor_budget.py --schedule)
DEFAULT_ESTIMATE_MODE = "last2"  # estimate mode's estimator, chosen leave-one-trace-out (same bench)


def _default_home() -> str:
    try:
        from airflow_provider_hpcai.advisor.settings import read_settings

        return read_settings().home
    except Exception:  # no Airflow config available: fall back to the default folder
        from airflow_provider_hpcai.advisor.settings import default_home

        return default_home()


def _site_guard(args: argparse.Namespace) -> Any:
    """The guard this Airflow's ``[hpcai]`` keys configure (``--site``), or ``None`` after saying why not."""
    from airflow_provider_hpcai import config
    from airflow_provider_hpcai.advisor.settings import read_guard_spec
    from airflow_provider_hpcai.exceptions import ConfigurationError

    if args.kill_budget is not None or args.calibration != "guarded":
        print("--site judges with the site's guard: its budget is [hpcai] advisor_kill_budget; "
              "drop --kill-budget and --calibration", file=sys.stderr)
        return None
    try:
        return read_guard_spec(config.get)
    except ConfigurationError as error:
        print(f"--site: {error}", file=sys.stderr)
        return None


def _evaluate(args: argparse.Namespace) -> int:
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("advisor", "numpy", feature="hpcai advisor evaluate")
    from airflow_provider_hpcai.advisor.evaluate import evaluate_trace, format_table

    guard = _site_guard(args) if args.site else None
    if args.site and guard is None:
        return 2
    budget = 0.05 if args.kill_budget is None else args.kill_budget
    if not 0.0 < budget < 1.0:
        print(f"--kill-budget must be between 0 and 1, got {args.kill_budget}", file=sys.stderr)
        return 2
    if not 0.0 <= args.estimate_quantile < 1.0:
        print(f"--estimate-quantile must be 0 (off) or between 0 and 1, got {args.estimate_quantile}", file=sys.stderr)
        return 2
    if args.kill_window < 1:
        print(f"--kill-window must be at least 1 job, got {args.kill_window}", file=sys.stderr)
        return 2
    results = [evaluate_trace(path, quantile=args.quantile, schedule=not args.no_schedule,
                              kill_window=args.kill_window, calibration=args.calibration,
                              kill_budget=guard.kill_budget if guard else budget, guard=guard,
                              estimate_quantile=args.estimate_quantile or None,
                              estimate_mode=args.estimate_mode) for path in args.swf]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], default=float))
        return 0
    print(format_table(results))
    for r in results:
        m = r["model"]
        if m["spec"].get("calibration") == "guarded":
            adv = r["policies"]["advisor"]
            held = (f"guarded: {100 * adv['kill_rate']:.1f} % killed, worst window "
                    f"{100 * adv['worst_window_kill_rate']:.1f} % (budget {100 * m['target_rate']:.1f} %); "
                    f"held back: {m['held']}")
        elif m["spec"].get("calibration") == "kills":
            held = (f"kill calibration: {100 * m['exceedance']:.1f} % of advised jobs killed "
                    f"(budget {100 * m['target_rate']:.1f} %)")
        else:
            held = (f"{100 * m['exceedance']:.1f} % of jobs above prediction "
                    f"(target {100 * m['target_rate']:.1f} %)")
        if args.site:
            print(f"{r['trace']}: the site's guard ([hpcai]): {m['guard']}")
        print(f"{r['trace']}: {r['test_jobs']} test jobs of {r['jobs']}; QuantReg q{m['spec']['quantile']:g}: "
              f"{held}; bar: {'PASSED' if r['bar']['passed'] else 'not met'} {r['bar']}")
        kills = ", ".join(f"{name} {100 * p['kill_rate']:.1f} % (worst {100 * p['worst_window_kill_rate']:.1f} %)"
                          for name, p in r["policies"].items())
        print(f"{r['trace']}: kills (worst window of {r['kill_window']} test jobs): {kills}")
        energy = ", ".join(f"{name} {p['energy_saved_kwh']:+,.0f} kWh" for name, p in r["policies"].items()
                           if name != "users")
        print(f"{r['trace']}: energy saved against the users' requests (advisor/energy.py model): {energy}")
        bound = r.get("enforce_wait_bound")
        if bound and not bound["reachable"]:
            print(f"{r['trace']}: enforce cannot wait as little as the users' requests at this kill rate: the "
                  f"advisor's lost attempts alone add {bound['kill_wait_floor_s'] / 60:.1f} min of mean wait, "
                  f"the users' requests wait {bound['users_mean_wait_s'] / 60:.1f} min; estimate mode plans without "
                  f"killing (docs/advisor.md, 'Enforce: what makes it faster')")
    return 0


def _train(args: argparse.Namespace) -> int:
    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("advisor", "numpy", "statsmodels", "mlflow", feature="hpcai advisor train")
    from airflow_provider_hpcai.advisor.history import HistoryStore

    home = os.path.abspath(args.home or _default_home())
    if args.swf:
        from airflow_provider_hpcai.advisor.train import train_from_swf

        model, metrics = train_from_swf(args.swf, quantile=args.quantile, schedule=not args.no_schedule)
        params: dict[str, Any] = {"source": os.path.basename(args.swf), "quantile": args.quantile}
    else:
        from airflow_provider_hpcai.advisor.train import train_from_records

        records = HistoryStore(home).records()
        if not records:
            print(f"no job history under {home}; run some tasks first or pass --swf TRACE", file=sys.stderr)
            return 2
        model, metrics = train_from_records(records)
        params = {"source": "history", "jobs": len(records)}
    if args.no_register:
        from airflow_provider_hpcai.advisor.cache import write_champion

        print(json.dumps({"champion_path": write_champion(home, model), "metrics": metrics}, default=float))
        return 0
    from airflow_provider_hpcai.advisor.registry import register_model

    settings_uri = None
    try:
        from airflow_provider_hpcai.advisor.settings import read_settings

        settings_uri = read_settings().tracking_uri
    except Exception as err:  # no Airflow settings here: the default tracking URI
        print(f"(no [hpcai] advisor settings: {err}; using the default tracking URI)", file=sys.stderr)
    result = register_model(model, metrics, home=home, tracking_uri=args.tracking_uri or settings_uri, params=params)
    print(json.dumps(result.__dict__, default=str))
    return 0


def _guard_lines(home: str, guard: GuardSpec | None, guard_error: str | None) -> list[str]:
    if guard_error is not None:
        return [f"guard settings: invalid: {guard_error}"]
    from airflow_provider_hpcai.advisor.guard import GuardSpec
    from airflow_provider_hpcai.advisor.guard_status import describe

    return describe(home, guard or GuardSpec())


def _time_min_line(mode: str, soft: bool, plans: bool) -> str | None:
    """What ``--time-min`` the mode sets, with these settings (``None`` where the mode sets none)."""
    unsafe = ("without [hpcai] advisor_time_min_soft = True (Slurm's SchedulerParameters=time_min_as_soft_limit) "
              "Slurm kills a backfilled job at its --time-min")
    if mode == "estimate":
        return ("--time-min: the mean of each series' last two runs (soft limit stated)" if soft
                else f"--time-min: recorded, not set: {unsafe}; estimate mode changes nothing here")
    if mode != "enforce":
        return None
    if soft and plans:
        return "--time-min: the q0.3 run-time estimate of every job; the guarded limit still kills"
    if soft:
        return "--time-min: not set ([hpcai] advisor_enforce_time_min = False): the scheduler plans with the limits"
    return (f"--time-min: not set, {unsafe}; the scheduler plans with the cut limits, which waited longer than "
            "the users' own requests on all six replayed traces (docs/advisor.md)")


def status_lines(home: str, mode: str, *, guard: GuardSpec | None = None,
                 guard_error: str | None = None, time_min_soft: bool = False,
                 enforce_time_min: bool = False) -> list[str]:
    """What the advisor has and what it needs, as lines for a person (pure apart from reading files).

    :param home: the advisor home (``[hpcai] advisor_home``, default ``$AIRFLOW_HOME/hpcai/advisor``).
    :param mode: ``[hpcai] advisor_mode``.
    :param guard: the guard's settings in force (``None``: the shipped ``GuardSpec()``).
    :param guard_error: what is wrong with the ``[hpcai]`` guard keys, if anything (said instead
        of the guard's state).
    :param time_min_soft: ``[hpcai] advisor_time_min_soft``.
    :param enforce_time_min: ``[hpcai] advisor_enforce_time_min`` as resolved (unset: the soft setting).
    """
    from airflow_provider_hpcai.advisor.cache import CHAMPION_FILE, ChampionCache
    from airflow_provider_hpcai.advisor.history import HistoryStore

    champion_path = os.path.join(home, CHAMPION_FILE)
    lines = [f"advisor mode: {mode}", f"advisor home: {home}"]
    if mode == "off":
        lines.append("the advisor is off ([hpcai] advisor_mode = off): tasks keep their requested resources")
    elif mode == "estimate":
        lines.append("estimate mode sets only --time-min; the guard below judges advise and enforce")
    said = _time_min_line(mode, time_min_soft, enforce_time_min)
    if said:
        lines.append(said)
    lines.extend(_guard_lines(home, guard, guard_error))
    store = HistoryStore(home)
    jobs = 0
    if not os.path.exists(store.path):  # never create files just to look
        lines.append(f"job history: none yet ({store.path})")
    else:
        try:
            jobs = len(store)
        except Exception as err:  # an unreadable store is worth saying, not a traceback
            lines.append(f"job history: unreadable ({err})")
        else:
            lines.append(f"job history: {jobs} finished jobs recorded")
    if not os.path.exists(champion_path):
        lines.append(f"champion: none yet ({champion_path} does not exist); tasks keep their requested resources")
        if jobs:
            lines.append("next: train one with 'hpcai advisor train' (or run the hpcai_advisor_training DAG)")
        else:
            lines.append("next: run some Slurm/simulation tasks (each finished job is recorded), then "
                         "'hpcai advisor train'; or train on a trace: 'hpcai advisor train --swf TRACE'")
        return lines
    model = ChampionCache(home, check_every=0.0).get()
    if model is None:
        lines.append(f"champion: {champion_path} is unreadable; export it again with 'hpcai advisor train'")
    else:
        lines.append(f"champion: {getattr(model, 'version', None) or 'unversioned'} ({champion_path})")
    return lines


def _status(args: argparse.Namespace) -> int:
    mode, guard, guard_error, soft, plans = "advise", None, None, False, False
    try:
        from airflow_provider_hpcai.advisor.settings import read_settings

        settings = read_settings()
        mode, guard, guard_error = settings.mode, settings.guard, settings.guard_error
        soft, plans = settings.time_min_soft, settings.enforce_time_min
    except Exception as err:  # no Airflow config available: the defaults
        print(f"(no [hpcai] advisor settings: {err}; showing the defaults)", file=sys.stderr)
    home = os.path.abspath(args.home or _default_home())
    print("\n".join(status_lines(home, mode, guard=guard, guard_error=guard_error, time_min_soft=soft,
                                 enforce_time_min=plans)))
    return 1 if guard_error else 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``advisor`` with ``evaluate``, ``train`` and ``status`` on an argparse subparsers object."""
    parser = subparsers.add_parser("advisor", help="the AI resource advisor: evaluate and train models, show its status")
    sub = parser.add_subparsers(dest="advisor_command", required=True)

    evaluate = sub.add_parser("evaluate", help="replay an SWF trace and print kill rate, waste and slowdown")
    evaluate.add_argument("--swf", required=True, action="append", help="SWF trace, .swf or .swf.gz (repeat for several)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--quantile", type=float, default=0.93, help="QuantReg quantile (default 0.93)")
    evaluate.add_argument("--no-schedule", action="store_true", help="skip the EASY-backfilling replays")
    evaluate.add_argument("--kill-window", type=int, default=1000,
                          help="test jobs per rolling window for the worst-window kill rate (default 1000)")
    evaluate.add_argument("--calibration", choices=("exceedance", "kills", "guarded"), default="guarded",
                          help="the guarded per-user policy that holds --kill-budget on average and per window "
                               "(advisor/guard.py; default), or margins that hold the share of jobs above "
                               "prediction (exceedance, 1 - quantile) or the share killed (kills)")
    evaluate.add_argument("--estimate-quantile", type=float, default=DEFAULT_ESTIMATE_QUANTILE,
                          help="run-time quantile the scheduler plans with in the replays (estimates only, and "
                               f"beside the enforce limit); 0 = the limit itself (default {DEFAULT_ESTIMATE_QUANTILE})")
    evaluate.add_argument("--estimate-mode", choices=("last2", "quantile"), default=DEFAULT_ESTIMATE_MODE,
                          help="what estimate mode (--time-min) plans with in the estimates-only replay: the mean of "
                               "the user's last two run times (Tsafrir, EASY++) or the --estimate-quantile "
                               f"(default {DEFAULT_ESTIMATE_MODE})")
    evaluate.add_argument("--kill-budget", type=float, default=None,
                          help="the site's kill budget for --calibration kills/guarded (default 0.05)")
    evaluate.add_argument("--site", action="store_true",
                          help="judge with the guard this Airflow's [hpcai] keys configure (advisor_kill_budget, "
                               "advisor_guard_*, as 'hpcai advisor status' shows), e.g. to try the opt-in "
                               "candidates on your own log before turning them on")
    evaluate.set_defaults(func=_evaluate)

    train = sub.add_parser("train", help="train on the job history (or a trace), register, promote if better")
    train.add_argument("--home", help="advisor home (default: [hpcai] advisor_home)")
    train.add_argument("--swf", help="train on an SWF trace instead of the job history")
    train.add_argument("--quantile", type=float, default=0.93)
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite under the home)")
    train.add_argument("--no-register", action="store_true", help="only export champion.json, no MLflow")
    train.add_argument("--no-schedule", action="store_true", help="skip the scheduling replays (--swf)")
    train.set_defaults(func=_train)

    status = sub.add_parser("status", help="where the advisor looks, what history and champion it has, the guard's "
                                "settings and state, what next")
    status.add_argument("--home", help="advisor home (default: [hpcai] advisor_home)")
    status.set_defaults(func=_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m airflow_provider_hpcai.advisor.cli advisor evaluate ...``)."""
    parser = argparse.ArgumentParser(prog="hpcai")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
