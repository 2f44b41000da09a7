"""airflow-provider-hpcai: run MPI/GPU simulation stages on Slurm, Kubernetes or the local machine.

Import the pieces you need from their modules (``airflow_provider_hpcai.operators.slurm``...):
this package itself imports nothing heavy, so DAG files stay fast to parse.
"""

from __future__ import annotations

__version__ = "0.1.0"
