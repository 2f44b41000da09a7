"""Adaptive scaling options of a Dask cluster: parsing, validation, and the libraries' ``adapt()`` arguments.

Pure: no dask import, no I/O. The option is a connection extra (``adaptive``) or an operator
argument of the same shape::

    {"minimum": 1, "maximum": 8, "target_duration": "5s", "scale_down_wait": "60s", "interval": "1s"}

``minimum``/``maximum`` count workers (``local``, ``kubernetes``) or worker jobs (``slurm``: each
job runs ``processes`` workers). The scaling itself is done by the libraries: distributed's
``Adaptive`` (``LocalCluster.adapt``), dask-jobqueue's ``JobQueueCluster.adapt(minimum_jobs=,
maximum_jobs=)`` and dask-kubernetes' ``KubeCluster.adapt(minimum=, maximum=)``; nothing here
loops. The wait before scaling down is ``Adaptive``'s ``wait_count`` consecutive ``interval``
checks in which the scheduler names a worker as idle.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.dask.errors import DaskConfigurationError

__all__ = ["AdaptiveConfig", "adapt_kwargs", "kubernetes_adapt_env", "parse_adaptive", "parse_seconds"]

#: Matched against the stripped text; one optional space (two ``\s*`` around an optional unit
#: backtracked quadratically on a long run of spaces: tests/hostile/test_redos.py).
_DURATION_RE = re.compile(r"(\d{1,15}(?:\.\d{1,15})?) ?(ms|s|m|min|h)?")
_MAX_DURATION_TEXT = 40
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}
KEYS = ("minimum", "maximum", "target_duration", "scale_down_wait", "interval")


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    """Bounds and timing of adaptive scaling (validated by :func:`parse_adaptive`).

    :param minimum: workers (or Slurm worker jobs) kept while idle; also the starting size.
    :param maximum: the most workers (or jobs) the cluster grows to.
    :param target_duration: seconds the queued work should take at the wanted size: the scheduler
        asks for ``total expected task time / target_duration`` workers (capped by ``maximum``).
    :param scale_down_wait: seconds a worker must stay idle before it is retired.
    :param interval: seconds between two scaling decisions.
    """

    minimum: int = 0
    maximum: int = 4
    target_duration: float = 5.0
    scale_down_wait: float = 60.0
    interval: float = 1.0

    @property
    def wait_count(self) -> int:
        """``Adaptive``'s ``wait_count``: checks in a row a worker must be idle before it goes."""
        return max(1, math.ceil(self.scale_down_wait / self.interval - 1e-9))

    def describe(self, unit: str = "workers") -> str:
        """``'adaptive 1-3 workers (target 5s, scale down after 60s idle)'``."""
        return (f"adaptive {self.minimum}-{self.maximum} {unit} (target {self.target_duration:g}s, "
                f"scale down after {self.scale_down_wait:g}s idle)")


def parse_seconds(value: Any, *, what: str) -> float:
    """Seconds from a number or a string such as ``'500ms'``, ``'5s'``, ``'2m'``, ``'1h'``.

    :raises DaskConfigurationError: naming ``what`` and the forms accepted.
    """
    if isinstance(value, bool):
        raise DaskConfigurationError(f"{what} must be seconds (a number or '5s', '2m', '1h'), got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip() if isinstance(value, str) else ""
        match = _DURATION_RE.fullmatch(text) if 0 < len(text) <= _MAX_DURATION_TEXT else None
        if not match:
            shown = value if not isinstance(value, str) or len(value) <= _MAX_DURATION_TEXT else value[:20] + "..."
            raise DaskConfigurationError(f"{what} must be seconds (a number or '5s', '2m', '1h'), got {shown!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise DaskConfigurationError(f"{what} must be a finite number of seconds, got {value!r}")
    return seconds


def parse_adaptive(value: Any, *, where: str, max_size: int = 1000) -> AdaptiveConfig | None:
    """Validate an ``adaptive`` option; ``None``/``False``/``{}`` mean a fixed-size cluster.

    :param value: the option (a mapping with the keys of :class:`AdaptiveConfig`), or ``True`` for
        the defaults.
    :param where: named in errors (e.g. ``"dask connection 'dask_slurm': extra 'adaptive'"``).
    :param max_size: the largest ``maximum`` accepted.
    :raises DaskConfigurationError: an unknown key, a bound out of order, a duration out of range.
    """
    if value is None or value is False or value == {}:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise DaskConfigurationError(
            f"{where} must be a mapping such as {{'minimum': 1, 'maximum': 4, 'scale_down_wait': '60s'}}, "
            f"got {value!r}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise DaskConfigurationError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                     f"allowed: {', '.join(KEYS)}")
    defaults = AdaptiveConfig()

    def whole(key: str, default: int, low: int) -> int:
        item = value.get(key, default)
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= max_size:
            raise DaskConfigurationError(f"{where}: {key!r} must be a whole number from {low} to {max_size}, "
                                         f"got {item!r}")
        return item

    def seconds(key: str, default: float, low: float, high: float) -> float:
        result = parse_seconds(value.get(key, default), what=f"{where}: {key!r}")
        if not low <= result <= high:
            raise DaskConfigurationError(f"{where}: {key!r} must be from {low:g} to {high:g} seconds, "
                                         f"got {value.get(key)!r}")
        return result

    minimum = whole("minimum", defaults.minimum, 0)
    maximum = whole("maximum", max(defaults.maximum, minimum), 1)
    if maximum < minimum:
        raise DaskConfigurationError(f"{where}: 'maximum' ({maximum}) is smaller than 'minimum' ({minimum}); "
                                     "raise 'maximum' or lower 'minimum'")
    interval = seconds("interval", defaults.interval, 0.1, 3600.0)
    wait = seconds("scale_down_wait", defaults.scale_down_wait, 0.0, 7 * 86400.0)
    if wait < interval:
        raise DaskConfigurationError(f"{where}: 'scale_down_wait' ({wait:g}s) is shorter than 'interval' "
                                     f"({interval:g}s): workers are checked once per interval, so wait at least one")
    return AdaptiveConfig(minimum=minimum, maximum=maximum,
                          target_duration=seconds("target_duration", defaults.target_duration, 0.01, 86400.0),
                          scale_down_wait=wait, interval=interval)


def adapt_kwargs(cfg: AdaptiveConfig, *, jobs: bool = False) -> dict[str, Any]:
    """Arguments of ``cluster.adapt()``: distributed's ``Adaptive``, or dask-jobqueue's (``jobs=True``).

    dask-jobqueue multiplies ``minimum_jobs``/``maximum_jobs`` by the workers per job itself.
    """
    bounds = ({"minimum_jobs": cfg.minimum, "maximum_jobs": cfg.maximum} if jobs
              else {"minimum": cfg.minimum, "maximum": cfg.maximum})
    return {**bounds, "interval": f"{cfg.interval:g}s", "wait_count": cfg.wait_count,
            "target_duration": f"{cfg.target_duration:g}s"}


def kubernetes_adapt_env(cfg: AdaptiveConfig) -> dict[str, str]:
    """Dask configuration for the scheduler pod of a dask-kubernetes cluster.

    The Dask operator's autoscaler asks the scheduler how many workers it wants; the scheduler
    answers from its own ``distributed.adaptive.*`` settings, so the timing travels as environment.
    """
    return {
        "DASK_DISTRIBUTED__ADAPTIVE__TARGET_DURATION": f"{cfg.target_duration:g}s",
        "DASK_DISTRIBUTED__ADAPTIVE__INTERVAL": f"{cfg.interval:g}s",
        "DASK_DISTRIBUTED__ADAPTIVE__WAIT_COUNT": str(cfg.wait_count),
    }
