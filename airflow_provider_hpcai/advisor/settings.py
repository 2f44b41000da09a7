"""The advisor's settings from the ``[hpcai]`` section, cached once per process.

Values come from :func:`airflow_provider_hpcai.config.get` (the provider's one reader of
``[hpcai]``: ``airflow.cfg`` or ``AIRFLOW__HPCAI__<KEY>``). The policy calls
:func:`read_settings` at every DAG parse, so the result is cached; ``reset_settings()``
forgets it (tests, or after changing the configuration in a running process).

The guard's keys (:data:`GUARD_KEYS`: the site's kill budget and the guarded policy's
parameters) never make :func:`read_settings` raise: a bad value leaves
:attr:`AdvisorSettings.guard` ``None`` and the message in :attr:`AdvisorSettings.guard_error`;
:meth:`AdvisorSettings.require_guard` raises it as a
:class:`~airflow_provider_hpcai.exceptions.ConfigurationError` where the guard is needed (the
policy then logs it once and every task keeps its request), while the history store, the
``estimate`` mode and ``hpcai advisor status`` go on working.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_hpcai.advisor.guard import GuardSpec

__all__ = [
    "EXTRA_CANDIDATES_KEY", "GUARD_KEYS", "LIVE_EXTRA_CANDIDATES", "MACHINE_CORES_KEY", "AdvisorSettings", "default_home",
    "read_guard_spec", "read_machine_cores", "read_settings", "reset_settings",
]


@dataclasses.dataclass(frozen=True)
class _GuardKey:
    """One ``[hpcai]`` key of the guard: the :class:`~.guard.GuardSpec` field it sets and what it allows."""

    field: str
    kind: type
    allowed: str
    check: Callable[[float], bool]


#: ``[hpcai]`` key -> the guard setting it states (defaults: the shipped ``GuardSpec()``).
GUARD_KEYS: dict[str, _GuardKey] = {
    "advisor_kill_budget": _GuardKey(
        "kill_budget", float, "a number between 0 and 1, both excluded (the share of jobs the guard may see "
        "killed, e.g. 0.05 for 5 %)", lambda v: 0.0 < v < 1.0),
    "advisor_guard_aim": _GuardKey(
        "aim", float, "a number between 0 and 1, both excluded (e.g. 0.04)", lambda v: 0.0 < v < 1.0),
    "advisor_guard_max_in_flight": _GuardKey(
        "max_in_flight", int, "a whole number, 0 or more (0: no cap)", lambda v: v >= 0),
    "advisor_guard_probation": _GuardKey(
        "probation_clear", int, "a whole number, 0 or more (0: no probation)", lambda v: v >= 0),
    "advisor_guard_brake": _GuardKey(
        "brake", float, "a number from 0 to 1 (a share of the kill budget; 0: no brake)", lambda v: 0.0 <= v <= 1.0),
    "advisor_guard_brake_window": _GuardKey(
        "brake_window", int, "a whole number, 1 or more (submissions)", lambda v: v >= 1),
    "advisor_guard_abstain_ratio": _GuardKey(
        "abstain_ratio", float, "a number above 0 and at most 1 (a share of the request)", lambda v: 0.0 < v <= 1.0),
    "advisor_guard_min_saving_share": _GuardKey(
        "min_saving_share", float, "a number from 0 up to 1, 1 excluded (a share of a machine-hour; 0: off)",
        lambda v: 0.0 <= v < 1.0),
}
#: ``[hpcai]`` key naming the guard's opt-in history candidates (``GuardSpec.extra_candidates``).
EXTRA_CANDIDATES_KEY = "advisor_guard_extra_candidates"
#: The candidates of :data:`~.guard.EXTRA_CANDIDATES` the live guard computes: functions of the
#: series' last 20 run times (``user_max20_*``) and of its last 20 of the same cores (``user_procs_max20``).
LIVE_EXTRA_CANDIDATES: tuple[str, ...] = ("user_max20_x1.1", "user_max20_x1.5", "user_procs_max20")
#: ``[hpcai]`` key stating the cluster's cores (what ``advisor_guard_min_saving_share`` is a share of, per hour).
MACHINE_CORES_KEY = "advisor_machine_cores"


def default_home() -> str:
    """``$AIRFLOW_HOME/hpcai/advisor``, with ``AIRFLOW_HOME`` resolved as Airflow resolves it."""
    from airflow_provider_hpcai import config

    return os.path.join(config.airflow_home(), "hpcai", "advisor")


@dataclasses.dataclass(frozen=True)
class AdvisorSettings:
    """The advisor's part of ``[hpcai]``.

    :param mode: ``advisor_mode``: ``off``, ``advise``, ``enforce`` or ``estimate`` (lower case).
    :param home: ``advisor_home`` as an absolute path (history, champion export, default MLflow store);
        unset: :func:`default_home`.
    :param tracking_uri: ``mlflow_tracking_uri``, or ``None`` for SQLite under ``home``.
    :param enforce_time_min: ``advisor_enforce_time_min``: ``enforce`` also sets ``time_min`` to the
        q0.3 run-time estimate of every job (unset: ``advisor_time_min_soft``; applied only with it).
    :param time_min_soft: ``advisor_time_min_soft``: the site's Slurm runs with
        ``SchedulerParameters=time_min_as_soft_limit``; without it no estimate is applied as
        ``time_min`` (``estimate`` mode records its estimate only).
    :param guard: the guarded policy's settings from :data:`GUARD_KEYS` (``None``: the shipped
        ``GuardSpec()``; also ``None`` when a key is bad, see ``guard_error``).
    :param guard_error: what is wrong with the guard's keys, or ``None``.
    :param machine_cores: ``advisor_machine_cores``: the cluster's cores (``None``: not stated);
        what ``advisor_guard_min_saving_share`` needs.
    """

    mode: str = "advise"
    home: str = dataclasses.field(default_factory=default_home)
    tracking_uri: str | None = None
    enforce_time_min: bool = False
    time_min_soft: bool = False
    guard: GuardSpec | None = None
    guard_error: str | None = None
    machine_cores: int | None = None

    def require_guard(self) -> GuardSpec:
        """The guard's settings in force.

        :raises ConfigurationError: a guard key of ``[hpcai]`` is bad (the message names it).
        """
        if self.guard_error is not None:
            from airflow_provider_hpcai.exceptions import ConfigurationError

            raise ConfigurationError(self.guard_error)
        if self.guard is None:
            from airflow_provider_hpcai.advisor.guard import GuardSpec

            return GuardSpec()
        return self.guard


def _env_name(key: str) -> str:
    return f"AIRFLOW__HPCAI__{key.upper()}"


def _parse_guard_value(key: str, text: str) -> float | int:
    """One guard key's value, or ``ValueError`` with the sentence that says what is allowed."""
    spec = GUARD_KEYS[key]
    problem = f"{_named(key)} must be {spec.allowed}; got {text!r}"
    try:
        value: float | int = int(text) if spec.kind is int else float(text)
    except ValueError:
        raise ValueError(problem) from None
    if not math.isfinite(value) or not spec.check(value):
        raise ValueError(problem)
    return value


def _named(key: str) -> str:
    return f"[hpcai] {key} ({_env_name(key)})"


def _parse_extra_candidates(text: str) -> tuple[str, ...]:
    """``advisor_guard_extra_candidates``: comma-separated names of :data:`LIVE_EXTRA_CANDIDATES`, or ``ValueError``."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    allowed = ", ".join(LIVE_EXTRA_CANDIDATES)
    bad = [name for name in names if name not in LIVE_EXTRA_CANDIDATES]
    if bad:
        raise ValueError(f"{_named(EXTRA_CANDIDATES_KEY)} names {', '.join(bad)}, which the live guard cannot "
                         f"compute; it allows comma-separated names out of: {allowed}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{_named(EXTRA_CANDIDATES_KEY)} names {', '.join(twice)} more than once (allowed names: "
                         f"{allowed})")
    return names


def read_machine_cores(get: Callable[[str], str | None]) -> int | None:
    """``advisor_machine_cores`` (``None`` when unset or empty).

    :raises ValueError: not a whole number of 1 or more (the message names the key).
    """
    text = (get(MACHINE_CORES_KEY) or "").strip()
    if not text:
        return None
    try:
        cores = int(text)
    except ValueError:
        cores = 0
    if cores < 1:
        raise ValueError(f"{_named(MACHINE_CORES_KEY)} must be a whole number, 1 or more (the cluster's cores); "
                         f"got {text!r}")
    return cores


def read_guard_spec(get: Callable[[str], str | None]) -> GuardSpec:
    """The :class:`~.guard.GuardSpec` the ``[hpcai]`` guard keys state (unset or empty: the shipped default).

    Besides :data:`GUARD_KEYS`: :data:`EXTRA_CANDIDATES_KEY` (names of
    :data:`LIVE_EXTRA_CANDIDATES`), and :data:`MACHINE_CORES_KEY`, which a ``min_saving_share``
    above 0 needs.

    :param get: reads one ``[hpcai]`` key (:func:`airflow_provider_hpcai.config.get`).
    :raises ConfigurationError: naming every bad key, its environment variable and what it allows.
    """
    from airflow_provider_hpcai.advisor.guard import GuardSpec
    from airflow_provider_hpcai.exceptions import ConfigurationError, InvalidJobSpecError

    values: dict[str, float | int | tuple[str, ...]] = {}
    problems = []
    for key, spec in GUARD_KEYS.items():
        text = (get(key) or "").strip()
        if not text:
            continue
        try:
            values[spec.field] = _parse_guard_value(key, text)
        except ValueError as error:
            problems.append(str(error))
    try:
        extra = _parse_extra_candidates(get(EXTRA_CANDIDATES_KEY) or "")
        if extra:
            values["extra_candidates"] = extra
    except ValueError as error:
        problems.append(str(error))
    try:
        cores = read_machine_cores(get)
        if values.get("min_saving_share") and cores is None:
            problems.append(f"{_named('advisor_guard_min_saving_share')} is {values['min_saving_share']!r}: a share "
                            f"of a machine-hour needs the cluster's cores in {_named(MACHINE_CORES_KEY)}")
    except ValueError as error:
        problems.append(str(error))
    if not problems:
        try:
            return GuardSpec(**values)
        except InvalidJobSpecError as error:  # a rule of GuardSpec's own that the table above does not state
            named = ", ".join(_named(key) for key, s in GUARD_KEYS.items() if s.field in values)
            problems.append(f"the guard settings {named} do not fit together: {error}")
    raise ConfigurationError("; ".join(problems) + ". Until this is fixed the advisor judges no task in advise "
                             "or enforce mode (every task keeps its request; estimate mode is not affected).")


@functools.lru_cache(maxsize=1)
def read_settings() -> AdvisorSettings:
    """Read ``[hpcai]`` once per process (``reset_settings()`` forgets it); never raises for a guard key."""
    from airflow_provider_hpcai import config
    from airflow_provider_hpcai.exceptions import ConfigurationError

    mode = (config.get("advisor_mode") or "advise").strip().lower()
    home = (config.get("advisor_home") or "").strip() or default_home()
    uri = (config.get("mlflow_tracking_uri") or "").strip() or None
    soft = config.get_bool("advisor_time_min_soft")
    stated = (config.get("advisor_enforce_time_min") or "").strip()
    plan = config.get_bool("advisor_enforce_time_min") if stated else soft
    guard: GuardSpec | None = None
    guard_error = None
    cores = None
    try:
        guard = read_guard_spec(config.get)
        cores = read_machine_cores(config.get)  # checked by read_guard_spec
    except ConfigurationError as error:
        guard_error = str(error)
    return AdvisorSettings(mode=mode, home=os.path.abspath(os.path.expanduser(home)), tracking_uri=uri,
                           enforce_time_min=plan, time_min_soft=soft, guard=guard, guard_error=guard_error,
                           machine_cores=cores)


def reset_settings() -> None:
    """Forget the cached settings: the next :func:`read_settings` reads ``[hpcai]`` again."""
    read_settings.cache_clear()
