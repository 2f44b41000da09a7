"""Resource policy: pure decision and escalation functions (no Airflow import here).

The Airflow cluster policy lives in :mod:`airflow_provider_hpcai.policy.airflow_policy`.
"""

from __future__ import annotations

from airflow_provider_hpcai.policy.decision import MODES, Bounds, Decision, advise
from airflow_provider_hpcai.policy.escalation import Ceilings, EscalationExhaustedError, escalate

__all__ = ["MODES", "Bounds", "Ceilings", "Decision", "EscalationExhaustedError", "advise", "escalate"]
