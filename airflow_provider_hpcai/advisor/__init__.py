"""The AI resource advisor: job history, quantile models, evaluation, registry and cache.

Nothing heavy is imported here: statsmodels, numpy, MLflow and matplotlib load inside the
functions that need them, so the policy's call path (:mod:`.cache`, :mod:`.models`) stays
pure Python.
"""

from __future__ import annotations
