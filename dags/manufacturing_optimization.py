"""manufacturing_optimization

See airflow_provider_hpcai.casestudies.workflows and docs/casestudies.md."""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import manufacturing_optimization

dag = manufacturing_optimization()
