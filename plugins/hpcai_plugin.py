"""Airflow plugins-folder shim for airflow-provider-hpcai.

Installing the provider registers the plugin through its ``airflow.plugins`` entry point;
copy this file into ``$AIRFLOW_HOME/plugins`` only where entry points are not used.
"""

from __future__ import annotations

from airflow_provider_hpcai.plugins.plugin import HpcAiPlugin

__all__ = ["HpcAiPlugin"]
