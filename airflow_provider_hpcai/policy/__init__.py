"""Resource policy: pure decision and escalation functions (no Airflow import here).

The Airflow cluster policy lives in :mod:`airflow_provider_hpcai.policy.airflow_policy`. Airflow
imports that module with itself (every scheduler, worker, triggerer and CLI process), and this
package comes first: its names load on first use (PEP 562), so the import costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MODES", "Bounds", "Ceilings", "Decision", "EscalationExhaustedError", "advise", "escalate", "suggest_resources",
]

_WHERE = {
    "MODES": "decision",
    "Bounds": "decision",
    "Decision": "decision",
    "advise": "decision",
    "Ceilings": "escalation",
    "EscalationExhaustedError": "escalation",
    "escalate": "escalation",
    "suggest_resources": "suggest",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
