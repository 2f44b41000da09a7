"""A finished job's result and its failure: re-exported from :mod:`airflow_provider_hpcai.jobs.outcome`."""

from __future__ import annotations

from airflow_provider_hpcai.jobs.outcome import build_result, failure_for

__all__ = ["build_result", "failure_for"]
