"""Kubernetes support: pure manifest builders (batch/v1 Job, Kubeflow MPIJob), state classification,
the workload hooks built on the cncf provider's hooks, and a ``pod_mutation_hook`` for advisor decisions.

Nothing here imports the ``kubernetes`` client at module import time: DAG files stay cheap to parse.
"""
