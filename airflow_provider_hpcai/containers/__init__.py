"""Containers: one image field that runs the same stage on Slurm, Kubernetes and the local machine.

:class:`Container` (pure data, validated on construction) and pure builders per runtime:

* :func:`oci_launch` / :func:`oci_sbatch_directives` - Slurm's ``--container`` (runc/crun via ``oci.conf``);
* :func:`pyxis_launch` - Pyxis/enroot ``--container-image`` and friends;
* :func:`apptainer_launch` - ``apptainer exec``;
* :func:`podman_launch`, :func:`runc_launch`, :func:`run_in_container` - the local machine;
* :func:`kubernetes_container` - a pod's container and volumes;
* :func:`resolve_runtime` - which runtime ``auto`` means on a backend, and whether it is offered.

Nothing here imports a heavy dependency: DAG files may import it. See docs/containers.md.
"""

from __future__ import annotations

from airflow_provider_hpcai.containers.errors import (
    ContainerImageNotFoundError,
    ContainerRuntimeNotFoundError,
    RuntimeNotOfferedError,
)
from airflow_provider_hpcai.containers.kubernetes import kubernetes_container
from airflow_provider_hpcai.containers.launch import Launch
from airflow_provider_hpcai.containers.local import (
    find_local_runtime,
    podman_launch,
    run_in_container,
    runc_launch,
)
from airflow_provider_hpcai.containers.model import RUNTIMES, Container, Mount, Runtime
from airflow_provider_hpcai.containers.oci import (
    image_env_exports,
    job_bundle_config,
    read_bundle_config,
    write_job_bundle,
)
from airflow_provider_hpcai.containers.runtime import BACKEND_RUNTIMES, resolve_runtime
from airflow_provider_hpcai.containers.schema import CONTAINER_SCHEMA
from airflow_provider_hpcai.containers.slurm import (
    apptainer_launch,
    oci_launch,
    oci_sbatch_directives,
    pyxis_launch,
)

__all__ = [
    "BACKEND_RUNTIMES",
    "CONTAINER_SCHEMA",
    "RUNTIMES",
    "Container",
    "ContainerImageNotFoundError",
    "ContainerRuntimeNotFoundError",
    "Launch",
    "Mount",
    "Runtime",
    "RuntimeNotOfferedError",
    "apptainer_launch",
    "find_local_runtime",
    "image_env_exports",
    "job_bundle_config",
    "kubernetes_container",
    "oci_launch",
    "oci_sbatch_directives",
    "podman_launch",
    "pyxis_launch",
    "read_bundle_config",
    "resolve_runtime",
    "run_in_container",
    "runc_launch",
    "write_job_bundle",
]
