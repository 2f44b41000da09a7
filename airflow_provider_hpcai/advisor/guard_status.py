"""What the guard holds now, as lines for a person (``hpcai advisor status``).

Read-only: the state file is read once, without the lock (writers replace it atomically), and
nothing is created; a missing file is "none yet", a damaged one one line saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from airflow_provider_hpcai.advisor.guard import GuardSpec, brake_holds, brake_threshold
from airflow_provider_hpcai.advisor.live_guard import STATE_FILE, LiveState

__all__ = ["describe", "describe_spec"]

#: At most this many series are named per line; the rest are counted.
NAMED_SERIES = 10


def _pct(value: float) -> str:
    return f"{100 * value:g} %"


def describe_spec(spec: GuardSpec, machine_cores: int | None = None) -> str:
    """The guard's settings in force, in one line (the ``[hpcai]`` keys that set each are in ``docs/advisor.md``).

    :param machine_cores: ``[hpcai] advisor_machine_cores``, shown with the small-saving rule.
    """
    cap = f"in-flight cap {spec.max_in_flight} advised jobs per series" if spec.max_in_flight else "no in-flight cap"
    probation = (f"probation until {spec.probation_clear} jobs in a row would have fitted" if spec.probation_clear
                 else "no probation")
    brake = (f"brake at {_pct(spec.brake)} of the budget over {spec.brake_window} submissions" if spec.brake
             else "no brake")
    extra = (f"extra candidates {', '.join(spec.extra_candidates)} ([hpcai] advisor_guard_extra_candidates)"
             if spec.extra_candidates else "no extra candidates ([hpcai] advisor_guard_extra_candidates)")
    if spec.min_saving_share:
        cores = f"{machine_cores} cores" if machine_cores else "cores not stated"
        small = (f"a cut saving under {_pct(spec.min_saving_share)} of a machine-hour ({cores}, [hpcai] "
                 "advisor_machine_cores) keeps the request ([hpcai] advisor_guard_min_saving_share)")
    else:
        small = "no minimum saving ([hpcai] advisor_guard_min_saving_share)"
    return (f"guard settings: kill budget {_pct(spec.kill_budget)} ([hpcai] advisor_kill_budget); aim "
            f"{_pct(spec.aim)}; {cap}; {probation}; {brake}; a limit at or above {_pct(spec.abstain_ratio)} of "
            f"the request keeps the request; {extra}; {small}")


def _named(counts: Mapping[str, int], what: str) -> str:
    names = sorted(counts)
    shown = ", ".join(f"{name} ({what.format(counts[name])})" for name in names[:NAMED_SERIES])
    more = len(names) - NAMED_SERIES
    return shown + (f", and {more} more" if more > 0 else "")


def describe(home: str, spec: GuardSpec, machine_cores: int | None = None) -> list[str]:
    """The guard's settings and what its state file under ``home`` holds now.

    :param home: the advisor home (``<home>/guard_state.json``).
    :param spec: the settings in force (:func:`~.live_guard.configured_spec`).
    :param machine_cores: ``[hpcai] advisor_machine_cores`` (``None``: read from the settings
        when ``spec.min_saving_share`` is set).
    :return: lines: the settings; submissions admitted; jobs pending (advised, kept their
        request); kills in the brake window against the budget and whether the brake holds for
        the next submission; series on probation; series at the in-flight cap.
    """
    if machine_cores is None and spec.min_saving_share:
        from airflow_provider_hpcai.advisor.settings import read_settings

        machine_cores = read_settings().machine_cores
    header = describe_spec(spec, machine_cores)
    path = os.path.join(home, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            state = LiveState.from_dict(json.load(handle), spec)
        return [header, f"guard state: {path}", *_state_lines(state, spec)]
    except FileNotFoundError:
        return [header, f"guard state: none yet ({path}); the first submission the guard admits creates it"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        said = (f"guard state: unreadable ({path}: {type(error).__name__}: {error}); the policy reads it as a "
                "fresh state (every job keeps its request) and the next submission rewrites it")
        return [header, said]


def _state_lines(state: LiveState, spec: GuardSpec) -> list[str]:
    """The state's figures (raises on a malformed entry: :func:`describe` says it is unreadable)."""
    lines = []
    g = state.guard
    advised = sum(1 for job in state.pending.values() if job.get("advised"))
    learnt = sum(1 for _, outcomes in g.margins.values() if outcomes >= 1)
    lines.append(f"  submissions admitted: {state.seq}; series with a known outcome: {learnt}")
    lines.append(f"  jobs pending: {len(state.pending)} ({advised} advised, {len(state.pending) - advised} kept "
                 "their request)")
    # the brake's rule as guard.hold_reason applies it to the next submission (number ``seq``)
    kills = g.recent_kills(state.seq, spec.brake_window)
    threshold = brake_threshold(spec)
    kills_line = (f"  kills: {kills} in the last {spec.brake_window} submissions (budget "
                  f"{_pct(spec.kill_budget)}: {spec.kill_budget * spec.brake_window:g} kills)")
    if not spec.brake:
        lines.append(kills_line + "; no brake")
    elif brake_holds(g, spec, state.seq):
        lines.append(kills_line + f"; brake HOLDING (at {threshold:g} kills): no job is advised until "
                     "older kills leave the window")
    else:
        lines.append(kills_line + f"; brake not holding (it holds at {threshold:g} kills)")
    if g.probation:
        lines.append(f"  on probation: {len(g.probation)} series, keeping their requests: "
                     + _named(g.probation, f"{{}} of {spec.probation_clear} fitted since its kill"))
    else:
        lines.append("  on probation: none")
    full = {s: n for s, n in g.in_flight.items() if spec.max_in_flight and n >= spec.max_in_flight}
    if full:
        lines.append(f"  at the in-flight cap: {len(full)} series: "
                     + _named(full, f"{{}} of {spec.max_in_flight} in flight"))
    else:
        lines.append("  at the in-flight cap: none")
    return lines
