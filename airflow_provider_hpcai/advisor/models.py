"""Quantile models of run time and peak memory, online margins, and the compact export.

* :func:`fit_quantreg` fits statsmodels' ``QuantReg`` on log values (an upper quantile).
* :class:`OnlineMargin` adds a margin on the log scale that is calibrated online (adaptive
  conformal updates): after each finished job it moves so that the share of jobs that
  exceed *prediction + margin* stays at ``alpha``. A series with enough history gets its own
  margin (a steady task gets a tight limit, an erratic one a loose one).
* :class:`CompactModel` is the exported model: coefficients, margins and each series' last
  jobs as a plain JSON-able dict; :meth:`CompactModel.predict` is pure Python and costs
  microseconds. The fallback chain is: no history for the series, or no request to compare
  with -> ``None`` (the caller keeps the user's request); a limit that would not save at
  least ``1 - abstain_ratio`` of the request -> the request itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.advisor.features import FEATURES, SeriesState, features_from_state
from airflow_provider_hpcai.advisor.history import series_key, size_of
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["COMPACT_FORMAT", "CompactModel", "OnlineMargin", "TargetModel", "TargetSpec", "fit_quantreg"]

COMPACT_FORMAT = "hpcai-advisor-compact/1"


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """How one quantity (``runtime`` or ``memory``) is predicted.

    :param name: ``runtime`` or ``memory``.
    :param quantile: the quantile QuantReg fits (e.g. 0.95).
    :param alpha: the exceedance (kill) rate the online margin aims at; defaults to ``1 - quantile``.
    :param gamma: step of the margin update (log scale).
    :param series_gamma: step of a series' own margin.
    :param min_obs: finished jobs a series needs before its own margin is used.
    :param abstain_ratio: keep the request when the limit would be above this share of it.
    :param floor: never advise below this (seconds or bytes).
    :param calibration: what the online margins hold at the target: ``exceedance`` (default; the
        share of jobs above prediction + margin stays at ``alpha``) or ``kills`` (the share of
        finished jobs that would have been killed under their advised limit, after the floor,
        the cap at the request and abstention, stays at ``kill_budget``).
    :param kill_budget: the site's kill budget for ``calibration="kills"`` (default 5 %).
    """

    name: str = "runtime"
    quantile: float = 0.93
    alpha: float | None = None
    gamma: float = 0.03
    series_gamma: float = 0.1
    min_obs: int = 5
    abstain_ratio: float = 0.7
    floor: float = 60.0
    calibration: str = "exceedance"
    kill_budget: float = 0.05

    def __post_init__(self) -> None:
        if self.calibration not in ("exceedance", "kills"):
            raise InvalidJobSpecError(f"calibration must be 'exceedance' or 'kills', not {self.calibration!r}")
        if not 0.0 < self.kill_budget < 1.0:
            raise InvalidJobSpecError(f"kill_budget must be between 0 and 1, not {self.kill_budget!r}")

    @property
    def target_rate(self) -> float:
        """The rate the online margins hold: the kill budget, or the exceedance target ``alpha``."""
        if self.calibration == "kills":
            return self.kill_budget
        return self.alpha if self.alpha is not None else 1.0 - self.quantile

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_quantreg(X: Any, y: Any, quantile: float, *, max_iter: int = 2000) -> list[float]:
    """Fit ``QuantReg(y ~ X)`` at ``quantile`` and return the coefficients (one per column).

    Columns that are constant (other than the first, the intercept) get a zero coefficient,
    which keeps the fit well posed when, say, every job has history.
    """
    import warnings

    from airflow_provider_hpcai.utils.extras import require_extra

    require_extra("advisor", "numpy", "statsmodels", feature="Training the resource advisor")
    import numpy as np
    from statsmodels.regression.quantile_regression import QuantReg

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(y) < X.shape[1] + 2:
        raise InvalidJobSpecError(f"need at least {X.shape[1] + 2} finished jobs to fit a model, got {len(y)}")
    spread = X.max(axis=0) - X.min(axis=0)
    keep = np.flatnonzero((spread > 1e-12) | (np.arange(X.shape[1]) == 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = QuantReg(y, X[:, keep]).fit(q=quantile, max_iter=max_iter, p_tol=1e-5)
    coef = np.zeros(X.shape[1])
    coef[keep] = np.asarray(result.params, dtype=float)
    return [float(c) for c in coef]


class OnlineMargin:
    """A log-scale margin kept at a target exceedance rate by adaptive conformal updates.

    :param alpha: target share of jobs whose value exceeds prediction + margin.
    :param gamma: global step; ``series_gamma`` the per-series step.
    :param min_obs: finished jobs before a series' own margin is used.
    """

    def __init__(self, alpha: float, gamma: float, series_gamma: float, min_obs: int, start: float = 0.0) -> None:
        self.alpha = alpha
        self.gamma = gamma
        self.series_gamma = series_gamma
        self.min_obs = min_obs
        self.global_margin = start
        self.series: dict[Any, list[float]] = {}

    def current(self, series: Any) -> tuple[float, float]:
        """(global margin, series margin) for a job being submitted now."""
        state = self.series.get(series)
        if state is None:
            state = self.series[series] = [self.global_margin, 0.0]
        return self.global_margin, state[0]

    def margin(self, series: Any) -> float:
        """The margin a job of ``series`` gets: its own once it has ``min_obs`` results, else the global one."""
        state = self.series.get(series)
        if state is not None and state[1] >= self.min_obs:
            return state[0]
        return self.global_margin

    def update(self, series: Any, residual_global: float, residual_series: float) -> None:
        """Record a finished job; residuals are ``log(value) - (prediction + margin used)``."""
        self.global_margin += self.gamma * ((1.0 if residual_global > 0 else 0.0) - self.alpha)
        state = self.series.setdefault(series, [self.global_margin, 0.0])
        state[0] += self.series_gamma * ((1.0 if residual_series > 0 else 0.0) - self.alpha)
        state[1] += 1


@dataclasses.dataclass
class TargetModel:
    """A fitted target: QuantReg coefficients over :data:`FEATURES` plus its online margins."""

    spec: TargetSpec
    coef: list[float]
    global_margin: float = 0.0
    series_margins: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)

    def raw(self, features: list[float]) -> float:
        """The log-scale quantile prediction before margins."""
        return sum(c * f for c, f in zip(self.coef, features))

    def margin(self, series: str) -> float:
        state = self.series_margins.get(series)
        if state is not None and state[1] >= self.spec.min_obs:
            return state[0]
        return self.global_margin

    def limit(self, raw: float, margin: float, request: float) -> float:
        """Turn a prediction into a limit: floor, cap at the request, abstain when close to it."""
        value = max(math.exp(min(raw + margin, 700.0)), self.spec.floor)
        if value >= self.spec.abstain_ratio * request:
            return request
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "coef": list(self.coef),
            "global_margin": self.global_margin,
            "series_margins": {k: [m, n] for k, (m, n) in self.series_margins.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetModel:
        coef = [float(c) for c in data["coef"]]
        if len(coef) != len(FEATURES):
            raise InvalidJobSpecError(f"a compact model needs {len(FEATURES)} coefficients, found {len(coef)}")
        return cls(
            spec=TargetSpec(**data["spec"]),
            coef=coef,
            global_margin=float(data.get("global_margin", 0.0)),
            series_margins={k: (float(v[0]), int(v[1])) for k, v in (data.get("series_margins") or {}).items()},
        )


def _request_of(requested: Any, name: str) -> tuple[float | None, float]:
    """(requested value, CPU count) from a Resources object or its ``to_dict()``."""
    if hasattr(requested, "to_dict"):
        requested = requested.to_dict()
    requested = requested or {}
    procs = float((requested.get("ntasks") or 1) * (requested.get("cpus_per_task") or 1))
    value = requested.get("time_limit") if name == "runtime" else requested.get("memory")
    return (float(value) if value else None), procs


@dataclasses.dataclass
class CompactModel:
    """The exported advisor model: plain data, pure-Python prediction.

    :param version: a label for the decision record (registry version or a local tag).
    :param targets: ``runtime`` and/or ``memory`` :class:`TargetModel`.
    :param series: per series and target, the :class:`SeriesState` of its last jobs.
    :param metrics: evaluation figures the model was promoted with.
    """

    version: str
    targets: dict[str, TargetModel]
    series: dict[str, dict[str, SeriesState]]
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def predict_target(
        self, name: str, series: str, request: float, procs: float, log_size: float | None = None
    ) -> tuple[float, str] | None:
        """Advised limit and reason for one target, or ``None`` when the model has nothing to say."""
        target = self.targets.get(name)
        if target is None:
            return None
        state = self.series.get(series, {}).get(name)
        if state is None or not state.history:
            return None
        features = features_from_state(state, request, procs, log_size)
        raw = target.raw(features)
        limit = target.limit(raw, target.margin(series), request)
        reason = "close to the request; kept it" if limit == request else f"q{target.spec.quantile:g} + margin"
        return limit, reason

    def predict(self, key: Mapping[str, Any], requested: Any) -> dict[str, Any]:
        """Advise run time and memory for a job.

        :param key: the operator's advisor key (``dag_id``, ``task_id``, ``owner``, ``kernel``, size params).
        :param requested: the job's :class:`~airflow_provider_hpcai.resources.Resources` (or its dict).
        :return: ``{"time_limit": seconds|None, "memory": bytes|None, "reasons": {...}, "version": ...}``;
            ``None`` means keep the user's value.
        """
        series = series_key(key)
        size_params = key.get("size_params")
        if size_params is None:
            size_params = {k: v for k, v in key.items()
                           if k not in ("dag_id", "task_id", "owner", "user", "kernel", "image")}
        size = size_of(size_params)
        log_size = math.log(size) if size else None
        out: dict[str, Any] = {"time_limit": None, "memory": None, "reasons": {}, "version": self.version}
        for name, field in (("runtime", "time_limit"), ("memory", "memory")):
            request, procs = _request_of(requested, name)
            if request is None:
                out["reasons"][field] = "no request to compare with"
                continue
            result = self.predict_target(name, series, request, procs, log_size)
            if result is None:
                out["reasons"][field] = ("no history for this task in image " + str(key["image"])
                                         if key.get("image") else "no history for this task")
                continue
            out[field], out["reasons"][field] = result
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": COMPACT_FORMAT,
            "version": self.version,
            "features": list(FEATURES),
            "targets": {name: t.to_dict() for name, t in self.targets.items()},
            "series": {
                key: {name: {"history": st.to_list(), "count": st.count} for name, st in per.items()}
                for key, per in self.series.items()
            },
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompactModel:
        """Rebuild from :meth:`to_dict`.

        :raises InvalidJobSpecError: when the data is not a compact model of this format.
        """
        if not isinstance(data, Mapping) or data.get("format") != COMPACT_FORMAT:
            raise InvalidJobSpecError(f"not a compact advisor model (expected format {COMPACT_FORMAT!r})")
        if list(data.get("features", [])) != list(FEATURES):
            raise InvalidJobSpecError("the compact model was built with other features; retrain it")
        try:
            return cls(
                version=str(data["version"]),
                targets={name: TargetModel.from_dict(t) for name, t in data["targets"].items()},
                series={
                    key: {name: SeriesState(st["history"], st.get("count")) for name, st in per.items()}
                    for key, per in data["series"].items()
                },
                metrics=dict(data.get("metrics") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidJobSpecError(f"the compact model is damaged ({error}); export it again") from error
