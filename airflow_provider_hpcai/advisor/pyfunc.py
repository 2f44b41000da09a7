"""MLflow pyfunc wrapper of the compact model (imported only by the registry, never by DAGs)."""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc

from airflow_provider_hpcai.advisor.models import CompactModel


class CompactAdvisorModel(mlflow.pyfunc.PythonModel):
    """Serves :meth:`CompactModel.predict` from the ``compact_model`` JSON artifact.

    Input: a DataFrame (or list of dicts) with columns ``key`` (advisor key dict) and
    ``requested`` (``Resources.to_dict()``). Output: one prediction dict per row.
    """

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["compact_model"], encoding="utf-8") as handle:
            self.model = CompactModel.from_dict(json.load(handle))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # MLflow reads hints
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        return [self.model.predict(row["key"], row["requested"]) for row in rows]
