"""The advisor's settings, under the name DAGs and earlier releases import.

They live in :mod:`airflow_provider_hpcai.advisor.settings` (the advisor owns its section of
``[hpcai]``); the policy layer sits above the advisor and re-exports them.
"""

from __future__ import annotations

from airflow_provider_hpcai.advisor.settings import (
    AdvisorSettings,
    default_home,
    read_settings,
    reset_settings,
)

__all__ = ["AdvisorSettings", "default_home", "read_settings", "reset_settings"]
