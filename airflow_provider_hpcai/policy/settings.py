"""The advisor's settings from Airflow's ``[hpcai]`` section, read in one place.

(The provider's config module will take this over; until then this is the only reader.)
"""

from __future__ import annotations

import dataclasses
import functools
import os

__all__ = ["AdvisorSettings", "read_settings", "reset_settings"]

DEFAULT_HOME = os.path.join("~", "airflow", "hpcai", "advisor")


@dataclasses.dataclass(frozen=True)
class AdvisorSettings:
    """``advisor_mode`` (off/advise/enforce/estimate), ``advisor_home``, ``mlflow_tracking_uri``."""

    mode: str = "advise"
    home: str = os.path.expanduser(DEFAULT_HOME)
    tracking_uri: str | None = None


@functools.lru_cache(maxsize=1)
def read_settings() -> AdvisorSettings:
    """Read ``[hpcai]`` once per process (``reset_settings()`` forgets it)."""
    from airflow.configuration import conf

    mode = (conf.get("hpcai", "advisor_mode", fallback="advise") or "advise").strip().lower()
    home = conf.get("hpcai", "advisor_home", fallback=DEFAULT_HOME) or DEFAULT_HOME
    uri = conf.get("hpcai", "mlflow_tracking_uri", fallback="") or None
    return AdvisorSettings(mode=mode, home=os.path.abspath(os.path.expanduser(home)), tracking_uri=uri)


def reset_settings() -> None:
    read_settings.cache_clear()
