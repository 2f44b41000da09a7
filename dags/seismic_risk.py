"""seismic_risk

See airflow_provider_hpcai.casestudies.workflows and docs/casestudies.md."""

from __future__ import annotations

from airflow_provider_hpcai.casestudies.workflows import seismic_risk

dag = seismic_risk()
