"""The guard's live state: what the evaluation's guarded policy knows, kept for the Airflow policy.

The replay (:func:`~.guard.guarded_limits`) walks a trace in time order; a live site has
submissions and job ends arriving from many Airflow processes at once. This module keeps the
same :class:`~.guard.GuardState` (kill-calibrated margins, per-series shadow nets, probation,
advised jobs in flight, kills seen) in ``<advisor_home>/guard_state.json`` and applies the same
rule functions of :mod:`~.guard` to it:

* at parse time the policy calls :func:`judge` on a snapshot re-read at most every
  ``check_every`` seconds, and only when the file's modification time changed (one ``os.stat``
  per 30 s, one small JSON read when it changed);
* just before a job is submitted, :func:`admit` re-checks the decision on the fresh state under
  an exclusive file lock (``guard_state.lock``; ``fcntl.flock``), so that a burst parsed by many
  workers in the same second still bets at most ``max_in_flight`` jobs per series; a job held
  back there keeps its request. It records the submission (its number for the brake window,
  its candidates for the shadow nets); the returned callable binds the scheduler's job id;
* when a finished job is added to the history store (:meth:`~.history.HistoryStore.add`, which
  the operators already call at the end of every job), :func:`note_finished` turns it into a
  kill (:func:`~.guard.note_kill`) or an outcome (:func:`~.guard.note_outcome`).

The rules' settings are the site's (``[hpcai] advisor_kill_budget`` and ``advisor_guard_*``,
read by :mod:`~.settings`; the shipped :class:`~.guard.GuardSpec` when unset): see
:func:`configured_spec`. The opt-in keys ``advisor_guard_extra_candidates`` (history candidates
of :data:`~.settings.LIVE_EXTRA_CANDIDATES`, computed by :func:`extra_limits` from the series'
last 20 run times) and ``advisor_guard_min_saving_share`` with ``advisor_machine_cores`` (the
replay's small-saving rule, :func:`~.guard.saving_too_small`) go through the same functions.
The state file names the candidates its shadow nets are kept for: when the configured
candidates change, the nets start again (said once), and a pending job judged with other
candidates teaches the margins and probation but not the nets.

Writers replace the file atomically (``os.replace``), so readers never take the lock. Nothing
here raises into a task: a damaged state file is said once and read as a fresh state (every
series keeps its request until the guard has learnt again), and the next write replaces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_hpcai.advisor.guard import (
    EXTRA_CANDIDATES,
    GuardSpec,
    GuardState,
    candidate_limits,
    decide,
    min_saving_of,
    note_advised,
    note_kill,
    note_outcome,
    saving_too_small,
)
from airflow_provider_hpcai.advisor.settings import read_settings

__all__ = [
    "LOCK_FILE", "STATE_FILE", "LiveGuard", "LiveState", "admit", "candidate_names", "clear_views",
    "configured_spec", "extra_limits", "judge", "note_finished",
]

log = logging.getLogger(__name__)
STATE_FILE = "guard_state.json"
LOCK_FILE = "guard_state.lock"
STATE_FORMAT = "hpcai-advisor-guard/1"
#: The margins' steps and the floor, as the evaluation's guarded replay uses them (``TargetSpec``).
GAMMA, SERIES_GAMMA, MIN_OBS, FLOOR = 0.03, 0.1, 5, 60.0
#: A submission never bound to a job id (the submit failed or the worker died) is dropped after this.
UNBOUND_TTL_S = 3600.0
#: A job whose end was never recorded is dropped this long after its limit would have ended it.
LOST_GRACE_S = 86400.0
#: The candidates a state file without a ``candidates`` entry kept its nets for (the shipped spec's).
SHIPPED_CANDIDATES = ("model", "max20")


def candidate_names(spec: GuardSpec) -> list[str]:
    """The names of the guard's candidates, in :func:`~.guard.candidate_limits` order (one shadow net each)."""
    return ["model", *(["max20"] if spec.max20_factor > 0 else []), *spec.extra_candidates]


def extra_limits(spec: GuardSpec, max20: float, same_size: Callable[[], Iterable[float]] | None = None) -> list[float]:
    """The configured extra candidates (``spec.extra_candidates``) of a series, in seconds (``nan``: no history).

    :param max20: the max of the series' last 20 run times (``user_max20_*``).
    :param same_size: the series' last 20 run times at the job's cores (``user_procs_max20``); only
        called when that candidate is configured.
    :raises ValueError: a candidate the live guard cannot compute (the settings refuse it first).
    """
    out = []
    for name in spec.extra_candidates:
        kind, feature, factor = EXTRA_CANDIDATES[name]
        if feature != "log_max_last20" or kind not in ("user", "user_procs"):
            raise ValueError(f"the live guard cannot compute the candidate {name!r}")
        if kind == "user":
            out.append(factor * max20)
        else:
            runs = list(same_size()) if same_size is not None else []
            out.append(factor * max(runs) if runs else math.nan)
    return out


@dataclasses.dataclass
class LiveState:
    """The guard's state plus what only a live site needs.

    :param guard: the rules' state.
    :param seq: submissions admitted so far (the brake counts kills by submission number).
    :param pending: submitted jobs whose end is not recorded yet, by ticket: series, number,
        candidates, margins used, request, limit, whether advised, job id, submission time.
    """

    guard: GuardState = dataclasses.field(default_factory=GuardState)
    seq: int = 0
    pending: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    candidates: list[str] = dataclasses.field(default_factory=lambda: list(SHIPPED_CANDIDATES))

    def to_dict(self) -> dict[str, Any]:
        g = self.guard
        return {
            "format": STATE_FORMAT,
            "seq": self.seq,
            "global_margin": g.global_margin,
            "margins": g.margins,
            "nets": {s: [list(q) for q in queues] for s, queues in g.nets.items()},
            "probation": g.probation,
            "in_flight": {s: n for s, n in g.in_flight.items() if n},
            "kills_seen": g.kills_seen,
            "pending": self.pending,
            "candidates": self.candidates,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], spec: GuardSpec) -> LiveState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not a guard state (expected format {STATE_FORMAT!r})")
        width = spec.profit_window or None
        names = candidate_names(spec)
        stored = [str(n) for n in data.get("candidates") or SHIPPED_CANDIDATES]
        nets = {s: [deque((float(v) for v in q), maxlen=width) for q in queues] for s, queues in data["nets"].items()}
        pending = {ticket: dict(job) for ticket, job in data["pending"].items()}
        if stored != names:  # the site changed its candidates: a net of one is no net of another
            if nets:
                _say_once(f"candidates {stored} -> {names}",
                          "advisor guard state: the configured candidates are %s, the state's shadow nets were kept "
                          "for %s: the nets of %d series start again", names, stored, len(nets))
            nets = {}
            pending = {ticket: {**job, "nets": False} for ticket, job in pending.items()}  # they teach no net
        wrong = sorted(s for s, queues in nets.items() if len(queues) != len(names))
        if wrong:
            _say_once(f"net lengths {wrong[:3]} {len(names)}",
                      "advisor guard state: %d series have shadow nets for another number of candidates than "
                      "the %d configured (%s): their nets start again", len(wrong), len(names), ", ".join(wrong[:3]))
            for s in wrong:
                del nets[s]
        guard = GuardState(
            global_margin=float(data["global_margin"]),
            margins={s: [float(m), float(n)] for s, (m, n) in data["margins"].items()},
            nets=nets,
            probation={s: int(n) for s, n in data["probation"].items()},
            in_flight={s: int(n) for s, n in data["in_flight"].items()},
            kills_seen=sorted(int(k) for k in data["kills_seen"]),
        )
        return cls(guard=guard, seq=int(data["seq"]), pending=pending, candidates=names)


def _finite(values: Iterable[float]) -> list[float | None]:
    """JSON-safe candidates: ``inf`` (a candidate without history) becomes ``None``."""
    return [v if math.isfinite(v) else None for v in values]


def _unfinite(values: Iterable[float | None]) -> list[float]:
    return [math.inf if v is None else float(v) for v in values]


class LiveGuard:
    """The live guard state under one advisor home.

    :param home: the advisor home folder.
    :param spec: the guard's settings (the shipped :class:`~.guard.GuardSpec` by default; the
        policy passes :func:`configured_spec`).
    :param capacity: the machine's cores (``[hpcai] advisor_machine_cores``); needed when
        ``spec.min_saving_share`` is set.
    :param check_every: seconds between modification-time checks of the snapshot :meth:`view` returns.
    :param clock: wall clock (seconds since the epoch) for submission times and expiry.
    :param monotonic: the clock :meth:`view` paces its checks with.
    """

    def __init__(self, home: str, spec: GuardSpec | None = None, *, check_every: float = 30.0,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 capacity: float | None = None) -> None:
        self.home = os.path.abspath(home)
        self.path = os.path.join(self.home, STATE_FILE)
        self.lock_path = os.path.join(self.home, LOCK_FILE)
        self.spec = spec or GuardSpec()
        self.capacity = capacity
        self.min_saving = min_saving_of(self.spec, capacity)
        self.names = candidate_names(self.spec)
        self.check_every = check_every
        self.clock = clock
        self.monotonic = monotonic
        self._view = LiveState()
        self._view_mtime: tuple[int, int] | None = None
        self._next_check = -math.inf
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ reading
    def _read(self) -> LiveState:
        """The state on disk; a missing file is a fresh state, and so is a damaged one (said once).

        A fresh state is the safe side: no series has an outcome yet, so every job keeps its
        request until the guard has learnt again.
        """
        try:
            with open(self.path, encoding="utf-8") as handle:
                return LiveState.from_dict(json.load(handle), self.spec)
        except FileNotFoundError:
            return LiveState()
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            _warn_once(f"reading {self.path}", error)
            return LiveState()

    def view(self) -> LiveState:
        """A snapshot for decisions (never written back); re-read when the file changed, at most every ``check_every`` s."""
        with self._mutex:
            now = self.monotonic()
            if now < self._next_check:
                return self._view
            self._next_check = now + self.check_every
            try:
                stat = os.stat(self.path)
                mtime = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                self._view, self._view_mtime = LiveState(), None
                return self._view
            if mtime != self._view_mtime:
                self._view = self._read()
                self._view_mtime = mtime
            return self._view

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def update(self) -> Iterator[LiveState]:
        """The state, read and written back under the exclusive lock (one writer at a time, any process)."""
        import fcntl

        os.makedirs(self.home, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                state = self._read()
                state.candidates = list(self.names)
                yield state
                self._expire(state)
                tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
                with open(tmp, "w", encoding="utf-8") as handle:
                    json.dump(state.to_dict(), handle)
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _expire(self, state: LiveState) -> None:
        """Forget kills outside the brake window and submissions that will never report back."""
        g = state.guard
        floor = state.seq - self.spec.brake_window
        if g.kills_seen and g.kills_seen[0] < floor:
            g.kills_seen = [k for k in g.kills_seen if k >= floor]
        now = self.clock()
        for ticket, job in list(state.pending.items()):
            ttl = LOST_GRACE_S + float(job["limit"]) if job.get("job_id") else UNBOUND_TTL_S
            if now - float(job["submitted"]) > ttl:
                del state.pending[ticket]
                if job["advised"]:
                    g.in_flight[job["series"]] = max(0, g.in_flight.get(job["series"], 0) - 1)

    # ------------------------------------------------------------------ the three moments
    def _decide(self, g: GuardState, series: str, cand: list[float], cap: float, index: int,
                request: float, procs: float) -> tuple[int, str | None]:
        """:func:`~.guard.decide`, then the small-saving rule as the replay applies it."""
        best, why = decide(g, self.spec, series, cand, cap, index)
        if why is None and saving_too_small(self.min_saving, procs, request, cand[best]):
            return -1, "small_saving"
        return best, why

    def judge(self, series: str, raw: float, max20: float, request: float, procs: float,
              same_size: Callable[[], Iterable[float]] | None = None) -> dict[str, Any]:
        """The guard's verdict for a task at parse time, on the cached snapshot (nothing is written).

        :param raw: the champion's log-scale run-time prediction; ``max20``: the max of the
            series' last 20 run times (``nan`` without).
        :param same_size: the series' last 20 run times at this job's cores, called only when
            ``user_procs_max20`` is configured (:func:`extra_limits`).
        :return: a JSON-safe record: ``limit`` (``None``: keep the request), ``held`` (why),
            and what :func:`admit` and :func:`note_finished` need.
        """
        state = self.view()
        g = state.guard
        own = g.margins.get(series) or [g.global_margin, 0.0]
        margin = own[0] if own[1] >= MIN_OBS else g.global_margin
        cand = candidate_limits(raw, margin, max20, self.spec, FLOOR, extra_limits(self.spec, max20, same_size))
        cap = self.spec.abstain_ratio * request
        best, why = self._decide(g, series, cand, cap, state.seq, request, procs)
        return {
            "series": series, "raw": raw, "used_global": g.global_margin, "used_series": own[0],
            "candidates": _finite(cand), "cap": cap, "request": request, "procs": procs,
            "chosen": best, "held": why, "limit": cand[best] if best >= 0 else None,
        }

    def admit(self, verdict: Mapping[str, Any], limit: float | None) -> tuple[str, float | None, str | None]:
        """Record a submission; re-check an advised one on the fresh state.

        :param verdict: what :meth:`judge` said for this task.
        :param limit: the time limit the job is about to be submitted with, when the guard's
            cut is in it (``None``: it runs with its request).
        :return: (a ticket for :meth:`bind`, the limit to submit: ``None`` when the job must keep
            its request after all, and why it must).
        """
        with self.update() as state:
            g = state.guard
            series = verdict["series"]
            cand, cap = _unfinite(verdict["candidates"]), float(verdict["cap"])
            index = state.seq
            state.seq += 1
            held = None
            if limit is not None:
                if len(cand) != len(self.names):  # judged under other candidates (the settings changed)
                    held = "candidates_changed"
                else:
                    _, held = self._decide(g, series, cand, cap, index, float(verdict["request"]),
                                           float(verdict["procs"]))
                if held is None:
                    note_advised(g, series)
                else:
                    limit = None
            ticket = f"{index}.{os.getpid()}"
            state.pending[ticket] = {
                "series": series, "index": index, "candidates": verdict["candidates"], "cap": cap,
                "raw": verdict["raw"], "used_global": verdict["used_global"], "used_series": verdict["used_series"],
                "request": verdict["request"], "procs": verdict["procs"], "advised": limit is not None,
                "limit": limit if limit is not None else verdict["request"], "job_id": None,
                "submitted": self.clock(), "held_at_submission": held,
            }
        return ticket, limit, held

    def bind(self, ticket: str, job_id: str) -> None:
        """The scheduler's id of the job admitted as ``ticket`` (what its end will be recorded under)."""
        with self.update() as state:
            if ticket in state.pending:
                state.pending[ticket]["job_id"] = str(job_id)

    def note_finished(self, records: Iterable[Any]) -> int:
        """Learn from finished jobs (:class:`~.history.JobRecord`) that were admitted here; returns how many.

        An advised job that ended ``TIMEOUT``/``DEADLINE`` (or that the operator classified as
        a timeout) is a kill: it feeds the brake and probation at once; its run time is learnt
        from its rerun, as in the replay. Any other admitted job teaches the margins, the shadow
        nets and probation its run time (capped at the request).
        """
        by_id = {str(r.job_id): r for r in records if getattr(r, "source", "slurm") == "slurm"}
        if not by_id or not any(str(job.get("job_id")) in by_id for job in self._read().pending.values()):
            return 0  # none of ours (an import of accounting records): no lock, no write
        learnt = 0
        with self.update() as state:
            for ticket, job in list(state.pending.items()):
                record = by_id.get(str(job.get("job_id")))
                if record is None:
                    continue
                del state.pending[ticket]
                learnt += 1
                series, request, limit = job["series"], float(job["request"]), float(job["limit"])
                elapsed = record.elapsed_seconds
                if job["advised"] and record.timed_out:
                    note_kill(state.guard, self.spec, series, int(job["index"]))
                    continue
                if elapsed is None:
                    if job["advised"]:
                        state.guard.in_flight[series] = max(0, state.guard.in_flight.get(series, 0) - 1)
                    continue
                run = min(float(elapsed), request)
                cand = _unfinite(job["candidates"])
                spec = self.spec
                if job.get("nets") is False or len(cand) != len(self.names):
                    spec = dataclasses.replace(spec, profit_window=0)  # other candidates: no net learns from it
                # Slurm rounds a limit up to whole minutes: a job that was not killed fitted its limit
                note_outcome(
                    state.guard, spec, series, run=run, request=request,
                    procs=float(job["procs"]), cand=cand, cap=float(job["cap"]),
                    raw=float(job["raw"]), used_global=float(job["used_global"]),
                    used_series=float(job["used_series"]), advised=bool(job["advised"]), limit=max(limit, run),
                    gamma=GAMMA, series_gamma=SERIES_GAMMA, floor=FLOOR,
                )
        return learnt


_GUARDS: dict[str, LiveGuard] = {}
_warned: set[str] = set()


def configured_spec() -> GuardSpec:
    """The guard's settings in force: ``[hpcai]`` (``advisor_kill_budget``, ``advisor_guard_*``), else ``GuardSpec()``.

    :raises ConfigurationError: a guard key is bad; the callers below never let it reach a
        submission or a job's end (logged once), and the policy logs it once per process while
        every task keeps its request.
    """
    return read_settings().require_guard()


def _guard_of(home: str) -> LiveGuard:
    """This process's :class:`LiveGuard` of ``home``, with the configured spec and machine cores (a new one when
    they changed)."""
    spec = configured_spec()
    capacity = read_settings().machine_cores
    guard = _GUARDS.get(home)
    if guard is None or (guard.spec is not spec and guard.spec != spec) or guard.capacity != capacity:
        guard = _GUARDS[home] = LiveGuard(home, spec, capacity=capacity)
    return guard


def clear_views() -> None:
    """Forget every process-wide :class:`LiveGuard` (tests, or after changing the home)."""
    _GUARDS.clear()


def _say_once(what: str, message: str, *args: Any) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(message, *args)


def _warn_once(what: str, error: Exception) -> None:
    _say_once(what, "advisor guard state: %s failed (%s: %s); jobs keep their requests where it matters",
              what, type(error).__name__, error)


def judge(home: str, series: str, raw: float, max20: float, request: float, procs: float,
          same_size: Callable[[], Iterable[float]] | None = None) -> dict[str, Any]:
    """:meth:`LiveGuard.judge` on this process's cached guard of ``home``."""
    return _guard_of(home).judge(series, raw, max20, request, procs, same_size)


def admit(decision: Mapping[str, Any] | None, resources: Any, *, home: str | None = None,
          log_to: Any = None) -> tuple[Any, Callable[[str], None]]:
    """Called by the operators just before a job is submitted (never raises).

    :param decision: the task's ``hpcai_decision`` (``None``: the advisor did not judge it).
    :param resources: the :class:`~airflow_provider_hpcai.resources.Resources` about to be submitted.
    :return: the resources to submit (the user's time limit back when the fresh state holds the
        job back) and a callable taking the job id once it is submitted.
    """
    verdict = (decision or {}).get("guard")
    if not verdict:
        return resources, lambda job_id: None
    try:
        if home is None:
            home = read_settings().home
        guard = _guard_of(home)
        current = resources.time_limit_seconds
        cut = current if verdict.get("limit") is not None and current is not None \
            and current < float(verdict["request"]) else None
        ticket, limit, held = guard.admit(verdict, cut)
        if cut is not None and limit is None:
            request = int(verdict["request"])
            changes: dict[str, Any] = {"time_limit": request}
            if resources.time_min_seconds and resources.time_min_seconds > request:
                changes["time_min"] = request
            resources = resources.replace(**changes)
            if log_to is not None:
                log_to.warning("Resource advisor: the guard holds this job back at submission (%s); it keeps "
                               "its requested time limit of %s s", held, request)
    except Exception as error:  # the guard must never stop a submission
        _warn_once("admit", error)
        return resources, lambda job_id: None

    def bind(job_id: str) -> None:
        try:
            guard.bind(ticket, job_id)
        except Exception as error:
            _warn_once("bind", error)

    return resources, bind


def note_finished(home: str, records: Iterable[Any]) -> int:
    """Feed finished jobs to the guard of ``home`` when it has a state file (never raises)."""
    if not os.path.exists(os.path.join(home, STATE_FILE)):
        return 0
    try:
        return _guard_of(home).note_finished(records)
    except Exception as error:
        _warn_once("note_finished", error)
        return 0
