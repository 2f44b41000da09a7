"""climate_adaptive

See airflow_provider_hpcai.casestudies.workflows and docs/casestudies.md."""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import climate_adaptive

dag = climate_adaptive()
