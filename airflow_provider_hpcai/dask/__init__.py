"""Pure helpers of the Dask layer: connection parsing, validation and progress summaries.

Nothing here imports dask: :mod:`airflow_provider_hpcai.hooks.dask` does that, inside functions,
when a task actually starts a cluster.
"""

from __future__ import annotations
