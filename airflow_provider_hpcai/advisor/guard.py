"""The guarded wall-time policy: a kill budget that holds per user and per window.

:func:`guarded_limits` turns the QuantReg predictions of :func:`~.online.run_online` into kill
limits in one time-ordered pass (submissions, kills and completions as they happen), with four
guards on top of a kill-calibrated margin:

* **experts per user** (online model selection): each job has candidate limits (the model's
  prediction + margin, and ``1.2 x`` the max of the user's last 20 finished jobs); each user
  keeps, per candidate, the shadow net saving of its last ``profit_window`` outcomes
  (``procs x (request - limit)`` when it would have survived, ``-procs x (limit + penalty x
  request)`` when it would have been killed), and is advised with the candidate whose net is
  highest, only when that net is not negative: a user whose limits cost more in killed attempts
  than they save gets the request (the explicit fallback);
* **probation**: after one of its jobs is killed, a user gets the request until
  ``probation_clear`` consecutive shadow limits would have held;
* **in-flight cap**: at most ``max_in_flight`` advised jobs of one user whose outcome is not
  known yet (a burst of hundreds of jobs submitted in a minute bets at most that many);
* **brake**: when the kills already seen among the last ``brake_window`` submitted jobs reach
  ``brake x budget x brake_window``, nobody is advised until they fall below it again.
* (opt-in) **small savings**: with ``min_saving_share``, a job whose saving ``procs x (request -
  limit)`` is under that share of a machine-hour keeps its request (a kill costs the budget the
  same whatever the job's size).

What is learnt when: a kill is known when it happens (submission + limit) and feeds the
probation, in-flight count and brake at once; the run time of a killed job, which the margins
and the shadow nets need, only when its resubmission (with the request) would have ended
(kill time + run time); a job that was not killed teaches everything at its end.

The rules themselves are plain functions over a :class:`GuardState` (:func:`decide`,
:func:`note_advised`, :func:`note_kill`, :func:`note_outcome`): :func:`guarded_limits` calls them in its replay, and the
Airflow policy calls the same functions on the live state that
:mod:`~airflow_provider_hpcai.advisor.live_guard` keeps under ``advisor_home``.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections import deque
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = [
    "EXTRA_CANDIDATES", "GuardResult", "GuardSpec", "GuardState", "brake_holds", "brake_threshold", "candidate_limits",
    "decide", "guarded_limits",
    "hold_reason", "margins_at_submission", "min_saving_of", "note_advised", "note_kill", "note_outcome", "saving_too_small",
    "shadow_limit",
]

#: Extra history candidates: name -> (series, feature, factor). ``user_request``: the user's
#: jobs with the same request (a round-value request usually names one application),
#: ``user``: all the user's jobs; ``user_procs``: the user's jobs with the same cores;
#: ``user_ratio``: the user's run / request shares, times the job's request
#: (:func:`~.candidates.history_candidate` computes them).
EXTRA_CANDIDATES: dict[str, tuple[str, str, float]] = {
    "user_request_max20": ("user_request", "log_max_last20", 1.2),
    "user_request_max5": ("user_request", "log_max_last5", 1.5),
    "user_max5": ("user", "log_max_last5", 1.5),
    # Opt-in, not chosen by default (``advisor/candidates.py`` has the series kinds):
    "user_max20_x1.1": ("user", "log_max_last20", 1.1),
    "user_max20_x1.5": ("user", "log_max_last20", 1.5),
    "user_procs_max20": ("user_procs", "log_max_last20", 1.2),
    "user_ratio_max20": ("user_ratio", "log_max_last20", 1.2),
    "user_ratio_max5": ("user_ratio", "log_max_last5", 1.2),
}


@dataclasses.dataclass(frozen=True)
class GuardSpec:
    """Settings of the guarded policy (defaults chosen leave-one-trace-out, ``docs/advisor.md``).

    :param kill_budget: the site's kill budget (share of test jobs killed, mean and per window).
    :param aim: share of jobs the kill-calibrated margins let exceed their limit.
    :param max_in_flight: advised jobs of one user with an unknown outcome; 0 = no cap.
    :param probation_clear: consecutive shadow successes that end a user's probation; 0 = none.
    :param profit_window: shadow outcomes per user and candidate in the net saving; 0 = no check.
    :param kill_penalty: a shadow kill also costs ``kill_penalty x request`` core-seconds.
    :param brake: share of the budget at which the site-wide brake holds; 0 = no brake.
    :param brake_window: submitted jobs the brake looks back over.
    :param max20_factor: the max-of-last-20 candidate's factor; 0 = the model's limit only.
    :param abstain_ratio: a candidate at or above this share of the request saves too little to
        risk a kill: the job keeps its request.
    :param extra_candidates: more history candidates (names in :data:`EXTRA_CANDIDATES`), each
        chosen per user by the same shadow net saving.
    :param min_saving_share: a job whose saving ``procs x (request - limit)`` is below this
        share of a machine-hour (``capacity x 3600`` core-seconds) keeps its request: a kill
        counts against the budget whatever the job's size; 0 = off. Applied by
        :func:`guarded_limits` (which must then be given the machine's ``capacity``).
    """

    kill_budget: float = 0.05
    aim: float = 0.04
    max_in_flight: int = 5
    probation_clear: int = 3
    profit_window: int = 10
    kill_penalty: float = 1.0
    brake: float = 0.85
    brake_window: int = 1000
    max20_factor: float = 1.2
    abstain_ratio: float = 0.85
    extra_candidates: tuple[str, ...] = ()
    min_saving_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.kill_budget < 1.0:
            raise InvalidJobSpecError(f"kill_budget must be between 0 and 1, not {self.kill_budget!r}")
        if not 0.0 < self.aim < 1.0:
            raise InvalidJobSpecError(f"aim must be between 0 and 1, not {self.aim!r}")
        for name in ("max_in_flight", "probation_clear", "profit_window", "brake_window"):
            if getattr(self, name) < 0:
                raise InvalidJobSpecError(f"{name} must be 0 or more, not {getattr(self, name)!r}")
        if self.brake < 0 or self.kill_penalty < 0 or self.max20_factor < 0:
            raise InvalidJobSpecError("brake, kill_penalty and max20_factor must be 0 or more")
        unknown = [c for c in self.extra_candidates if c not in EXTRA_CANDIDATES]
        if unknown:
            raise InvalidJobSpecError(f"unknown extra candidates {unknown!r}; known: {sorted(EXTRA_CANDIDATES)}")
        if not 0.0 < self.abstain_ratio <= 1.0:
            raise InvalidJobSpecError(f"abstain_ratio must be in (0, 1], not {self.abstain_ratio!r}")
        if not 0.0 <= self.min_saving_share < 1.0:
            raise InvalidJobSpecError(f"min_saving_share must be in [0, 1), not {self.min_saving_share!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GuardState:
    """Everything the guard's rules read and change (the replay's and the live policy's).

    :param global_margin: the site-wide kill-calibrated margin (log scale).
    :param margins: per series, ``[margin, outcomes learnt]``.
    :param nets: per series, one deque per candidate: shadow net savings of the last outcomes.
    :param probation: series on probation -> consecutive shadow successes since its kill.
    :param in_flight: per series, advised jobs whose outcome is not known yet.
    :param kills_seen: submission indices of the advised jobs whose kill is known, sorted.
    """

    global_margin: float = 0.0
    margins: dict[Any, list[float]] = dataclasses.field(default_factory=dict)
    nets: dict[Any, list[deque[float]]] = dataclasses.field(default_factory=dict)
    probation: dict[Any, int] = dataclasses.field(default_factory=dict)
    in_flight: dict[Any, int] = dataclasses.field(default_factory=dict)
    kills_seen: list[int] = dataclasses.field(default_factory=list)

    def recent_kills(self, index: int, window: int) -> int:
        """Kills seen among the submissions ``index - window`` .. ``index``."""
        return len(self.kills_seen) - bisect.bisect_left(self.kills_seen, index - window)


def shadow_limit(raw: float, margin: float, log_floor: float) -> float:
    """The model's limit for a log-scale prediction ``raw`` and a margin, not below the floor."""
    return math.exp(max(raw + margin, log_floor))


def margins_at_submission(state: GuardState, series: Any) -> tuple[float, list[float]]:
    """(global margin, the series' ``[margin, outcomes]``) for a job submitted now (creates the series)."""
    own = state.margins.get(series)
    if own is None:
        own = state.margins[series] = [state.global_margin, 0.0]
    return state.global_margin, own


def candidate_limits(
    raw: float, margin: float, max20: float, guard: GuardSpec, floor: float, extra: Any = (),
) -> list[float]:
    """The job's candidate limits: the model's, ``max20_factor x`` the max of the last 20, extras.

    A candidate without history is ``inf`` (never chosen).
    """
    cand = [shadow_limit(raw, margin, math.log(floor) if floor > 0 else -math.inf)]
    if guard.max20_factor > 0:
        cand.append(max(guard.max20_factor * max20, floor) if math.isfinite(max20) else math.inf)
    for value in extra:
        cand.append(max(value, floor) if math.isfinite(value) else math.inf)
    return cand


def hold_reason(
    state: GuardState, guard: GuardSpec, series: Any, cand: list[float], cap: float, index: int,
) -> str | None:
    """Why the job submitted as number ``index`` keeps its request, or ``None`` when it may be advised.

    :param cap: ``abstain_ratio x request``: a candidate at or above it saves too little.
    """
    own = state.margins.get(series)
    if own is None or own[1] < 1:
        return "no_history"
    if min(cand) >= cap:
        return "no_saving"
    if series in state.probation:
        return "probation"
    if guard.max_in_flight and state.in_flight.get(series, 0) >= guard.max_in_flight:
        return "in_flight"
    if brake_holds(state, guard, index):
        return "brake"
    return None


def brake_threshold(guard: GuardSpec) -> float:
    """Kills within the last ``brake_window`` submissions at which the brake holds (``brake x budget x window``)."""
    return guard.brake * guard.kill_budget * guard.brake_window


def brake_holds(state: GuardState, guard: GuardSpec, index: int) -> bool:
    """Whether the site-wide brake holds the job submitted as number ``index`` (never without a brake)."""
    return bool(guard.brake) and state.recent_kills(index, guard.brake_window) >= brake_threshold(guard)


def min_saving_of(guard: GuardSpec, capacity: float | None) -> float:
    """The smallest saving worth a cut, in core-seconds: ``min_saving_share x capacity x 3600`` (0: off).

    :param capacity: the machine's cores; needed when ``guard.min_saving_share`` is set.
    :raises InvalidJobSpecError: ``min_saving_share`` is set without a capacity above 0.
    """
    if guard.min_saving_share and not (capacity and capacity > 0):
        raise InvalidJobSpecError("min_saving_share needs the machine's capacity (cores)")
    return guard.min_saving_share * (capacity or 0.0) * 3600.0


def saving_too_small(min_saving: float, procs: float, request: float, limit: float) -> bool:
    """Whether cutting a job of ``procs`` cores from ``request`` to ``limit`` saves under ``min_saving`` core-seconds."""
    return bool(min_saving) and procs * (request - limit) < min_saving


def decide(
    state: GuardState, guard: GuardSpec, series: Any, cand: list[float], cap: float, index: int,
) -> tuple[int, str | None]:
    """The guard's decision for one job: ``(candidate, None)``, or ``(-1, why it keeps its request)``.

    The candidate is the one whose shadow net saving is highest and not negative. Reads
    ``state`` only: an advised job that is then submitted is counted by :func:`note_advised`.
    """
    why = hold_reason(state, guard, series, cand, cap, index)
    if why is not None:
        return -1, why
    best, best_net = -1, -math.inf
    queues = state.nets.get(series)
    for c, lim in enumerate(cand):
        if lim >= cap:
            continue
        net = sum(queues[c]) if queues else 0.0
        if net >= 0 and net > best_net:
            best, best_net = c, net
    if best < 0:
        return -1, "not_profitable"
    return best, None


def note_advised(state: GuardState, series: Any) -> None:
    """An advised job of ``series`` was submitted: one more in flight."""
    state.in_flight[series] = state.in_flight.get(series, 0) + 1


def note_kill(state: GuardState, guard: GuardSpec, series: Any, index: int) -> None:
    """An advised job (submitted as number ``index``) ran past its limit: count it, put the series on probation."""
    state.in_flight[series] = state.in_flight.get(series, 0) - 1
    bisect.insort(state.kills_seen, index)
    if guard.probation_clear:
        state.probation[series] = 0


def note_outcome(
    state: GuardState,
    guard: GuardSpec,
    series: Any,
    *,
    run: float,
    request: float,
    procs: float,
    cand: list[float] | None,
    cap: float,
    raw: float,
    used_global: float,
    used_series: float,
    advised: bool,
    limit: float,
    gamma: float,
    series_gamma: float,
    floor: float,
) -> None:
    """A job's run time is known: margins, shadow nets and probation learn from it.

    :param run: its run time (capped at the request); ``cand``/``cap`` as at its submission.
    :param raw: the model's log prediction it had; ``used_global``/``used_series`` the margins then.
    :param advised: whether it ran under an advised ``limit`` (a kill was already given to
        :func:`note_kill`; an advised job that fitted leaves the in-flight count here).
    """
    if advised and run <= limit:
        state.in_flight[series] -= 1
    log_floor = math.log(floor) if floor > 0 else -math.inf

    def would_kill(lim: float) -> float:
        return 1.0 if lim < cap and run > lim else 0.0

    state.global_margin += gamma * (would_kill(shadow_limit(raw, used_global, log_floor)) - guard.aim)
    own = state.margins.setdefault(series, [state.global_margin, 0.0])
    own[0] += series_gamma * (would_kill(shadow_limit(raw, used_series, log_floor)) - guard.aim)
    own[1] += 1
    cand = cand or []
    if guard.profit_window:
        queues = state.nets.setdefault(series, [deque(maxlen=guard.profit_window) for _ in range(len(cand))])
        for c, lim in enumerate(cand):
            if lim < cap:
                queues[c].append(procs * ((request - lim) if run <= lim else -(lim + guard.kill_penalty * request)))
    if series in state.probation and not (advised and run > limit) and cand:
        if would_kill(cand[0]):
            state.probation[series] = 0
        else:
            state.probation[series] += 1
            if state.probation[series] >= guard.probation_clear:
                del state.probation[series]


@dataclasses.dataclass
class GuardResult:
    """Per job: the kill limit (the request where not advised), whether it was advised, which
    candidate (0 model, 1 max-of-20, -1 none); and how often each guard held a job back."""

    limit: Any
    advised: Any
    candidate: Any
    held: dict[str, int]


def guarded_limits(
    *,
    submit: Any,
    run: Any,
    request: Any,
    procs: Any,
    series: Any,
    raw: Any,
    max20: Any,
    test_start: int,
    guard: GuardSpec,
    gamma: float = 0.03,
    series_gamma: float = 0.1,
    min_obs: int = 5,
    abstain_ratio: float | None = None,
    floor: float = 60.0,
    extra: Any = (),
    capacity: float | None = None,
) -> GuardResult:
    """Kill limits for every job (sorted by submission) under the guarded policy.

    :param submit: submission times; ``run``: run times (capped at the request); ``request``:
        the users' limits; ``procs``: cores; ``series``: integer user codes.
    :param raw: the model's log-scale prediction per job (NaN where it has none yet).
    :param max20: the max of the series' last 20 finished run times (NaN without history).
    :param test_start: jobs before it only warm the margins and nets up (they keep the request).
    :param gamma: global margin step; ``series_gamma`` a user's own step once it has
        ``min_obs`` outcomes.
    :param abstain_ratio: a candidate at or above this share of the request is not a saving
        (default ``guard.abstain_ratio``).
    :param floor: no limit below this (seconds).
    :param extra: further candidate limits per job (arrays, NaN where a candidate has none),
        chosen per user by the same shadow net saving as the model's and the max-of-20.
    :param capacity: the machine's cores; needed when ``guard.min_saving_share`` is set.
    """
    import numpy as np

    min_saving = min_saving_of(guard, capacity)

    n = len(submit)
    sub = np.asarray(submit, dtype=float).tolist()
    runs = np.asarray(run, dtype=float).tolist()
    req = np.asarray(request, dtype=float).tolist()
    cores = np.asarray(procs, dtype=float).tolist()
    ser = np.asarray(series).tolist()
    raws = np.asarray(raw, dtype=float).tolist()
    m20 = np.asarray(max20, dtype=float).tolist()
    more = [np.asarray(e, dtype=float).tolist() for e in extra]
    if abstain_ratio is None:
        abstain_ratio = guard.abstain_ratio

    state = GuardState()
    limit = list(req)
    advised = [False] * n
    chosen = [-1] * n
    used_g = [0.0] * n
    used_s = [0.0] * n
    cands: list[list[float] | None] = [None] * n
    held = {"no_history": 0, "probation": 0, "in_flight": 0, "brake": 0, "not_profitable": 0, "no_saving": 0}
    events: list[tuple[float, int, int]] = []  # (time, kind 0 kill / 1 outcome, job)

    for j in range(n):
        now = sub[j]
        while events and events[0][0] <= now:
            _, kind, k = heapq.heappop(events)
            if kind == 0:  # an advised job just ran past its limit
                note_kill(state, guard, ser[k], k)
            else:
                note_outcome(state, guard, ser[k], run=runs[k], request=req[k], procs=cores[k], cand=cands[k],
                             cap=abstain_ratio * req[k], raw=raws[k], used_global=used_g[k], used_series=used_s[k],
                             advised=advised[k], limit=limit[k], gamma=gamma, series_gamma=series_gamma,
                             floor=floor)
        if not math.isfinite(raws[j]):
            continue  # before the first fit: nothing to advise and nothing for the margins to learn
        s = ser[j]
        used_g[j], own = margins_at_submission(state, s)
        used_s[j] = own[0]
        cand = candidate_limits(raws[j], own[0] if own[1] >= min_obs else used_g[j], m20[j], guard, floor,
                                [e[j] for e in more])
        cands[j] = cand
        if j >= test_start:
            best, why = decide(state, guard, s, cand, abstain_ratio * req[j], j)
            if why is None and saving_too_small(min_saving, cores[j], req[j], cand[best]):
                why = "small_saving"
            if why is not None:
                held[why] = held.get(why, 0) + 1
            else:
                limit[j], advised[j], chosen[j] = cand[best], True, best
                note_advised(state, s)
        if advised[j] and runs[j] > limit[j]:
            heapq.heappush(events, (now + limit[j], 0, j))
            heapq.heappush(events, (now + limit[j] + runs[j], 1, j))  # the rerun tells the run time
        else:
            heapq.heappush(events, (now + runs[j], 1, j))
    return GuardResult(np.array(limit), np.array(advised), np.array(chosen), held)
