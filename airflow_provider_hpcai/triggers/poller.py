"""The shared status poller: moved to :mod:`airflow_provider_hpcai.jobs.poller` (re-exported here)."""

from __future__ import annotations

from airflow_provider_hpcai.jobs.poller import (
    _POLLERS,
    MISSING_POLLS_LIMIT,
    StatusPoller,
    get_poller,
    reset_pollers,
)

__all__ = ["MISSING_POLLS_LIMIT", "StatusPoller", "get_poller", "reset_pollers"]
__all__ += ["_POLLERS"]
