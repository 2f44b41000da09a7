"""Errors of the Dask layer; both subclass the provider's base exceptions."""

from __future__ import annotations

from airflow_provider_hpcai.exceptions import ConfigurationError, HpcAiError

__all__ = ["DaskClusterError", "DaskConfigurationError"]


class DaskConfigurationError(ConfigurationError, ValueError):
    """A ``dask`` connection's extras are missing, unknown or unsafe; the message names the key to fix."""


class DaskClusterError(HpcAiError):
    """A Dask cluster did not come up (e.g. its workers never joined); the message says where to look."""
