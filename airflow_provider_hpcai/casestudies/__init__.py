"""Case-study workflows: adaptive climate, seismic risk and manufacturing optimisation.

Each case study is three things:

* a DAG builder in :mod:`.workflows` (used by ``dags/<case>.py`` and, as a template factory, by
  ``templates/<case>/template.yaml``);
* analysis functions in :mod:`.climate`, :mod:`.seismic` and :mod:`.manufacturing`: pure numpy
  helpers with known answers, and ``aggregate_*`` / ``run_sweep`` functions that take a
  ``distributed.Client`` first (run by :class:`~airflow_provider_hpcai.operators.dask.DaskOperator`);
* plots (:mod:`.plots`) and an HTML report with embedded images (:mod:`.report`).

Nothing heavy is imported here or by :mod:`.workflows` at DAG-parse time: numpy, dask,
statsmodels and matplotlib load inside the functions that need them.
"""

from __future__ import annotations

__all__: list[str] = []
