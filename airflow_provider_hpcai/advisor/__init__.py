"""The AI resource advisor: job history, quantile models, evaluation, registry, cache and settings.

Nothing heavy is imported here: statsmodels, numpy, MLflow and matplotlib load inside the
functions that need them, so the policy's call path (:mod:`.cache`, :mod:`.models`) stays
pure Python. The advisor never imports the policy layer: :mod:`airflow_provider_hpcai.policy`
sits above it and turns its predictions into decisions (``policy.suggest_resources`` for the
template pages, ``policy.airflow_policy`` for DAGs).
"""
