"""Loader DAG file for workflow-template instances (airflow-provider-hpcai).

Every instance created with ``hpcai templates instantiate`` or the "Workflow Templates"
page becomes one DAG here, built from its files in the template repository (no database
access). New instances appear, and deleted ones disappear, at the dag processor's next
parse of this file. An instance that cannot be built is logged and skipped.

One file builds at most ``[hpcai] template_max_instances`` instances (1000 by default). For
more, split the work: copies of this file that each call ``load_instance_dags(shard=(k, n))``
(k = 0 .. n-1) are parsed in separate processes, each with its own import timeout
(see docs/templates.md, "The loader DAG file").
"""

from __future__ import annotations

from airflow_provider_hpcai.templates.loader import load_instance_dags

globals().update(load_instance_dags())
