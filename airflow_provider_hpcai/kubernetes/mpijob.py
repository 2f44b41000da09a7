"""Pure builder of Kubeflow ``MPIJob`` (kubeflow.org/v2beta1) manifests for multi-node jobs.

The MPI operator starts one launcher pod and ``nodes`` worker pods, writes a hostfile with
``slotsPerWorker`` slots per worker, and the launcher runs the job's script (which calls
``mpirun``/``mpiexec``; ``HPCAI_NTASKS`` holds the rank count). Workers run an SSH server
(``mpi_worker_command``) for the launcher to start ranks through.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.kubernetes.manifests import (
    ANNOTATION_NAME,
    KubernetesSettings,
    apply_container,
    check_single_pod,
    container_resources,
    env_list,
    labels_for,
    pod_spec,
    resolve_image,
)
from airflow_provider_hpcai.spec import JobSpec

__all__ = [
    "LAUNCHER_CONTAINER",
    "MPIJOB_GROUP",
    "MPIJOB_KIND",
    "MPIJOB_PLURAL",
    "MPIJOB_VERSION",
    "MPI_NAME_MAX",
    "WORKER_CONTAINER",
    "mpijob_manifest",
    "slots_per_worker",
]

MPIJOB_GROUP = "kubeflow.org"
MPIJOB_VERSION = "v2beta1"
MPIJOB_PLURAL = "mpijobs"
MPIJOB_KIND = "MPIJob"
LAUNCHER_CONTAINER = "launcher"
WORKER_CONTAINER = "worker"
#: Worker host names are ``<name>-worker-<i>`` DNS labels (at most 63 characters).
MPI_NAME_MAX = 45


def slots_per_worker(ntasks: int, nodes: int) -> int:
    """MPI slots per worker pod: the tasks spread over the nodes, rounded up."""
    return -(-ntasks // nodes)


def mpijob_manifest(
    spec: JobSpec, settings: KubernetesSettings, *, name: str, workdir: str | None = None
) -> dict[str, Any]:
    """An MPIJob with one launcher running ``spec.script`` and ``nodes`` workers.

    :param spec: the job; ``resources.memory``/``gpus`` are per worker (per node), CPUs are
        ``slotsPerWorker * cpus_per_task`` per worker.
    :param settings: namespace, image, scheduling, MPI implementation.
    :param name: the workload name (at most :data:`MPI_NAME_MAX` characters).
    :param workdir: the containers' working directory (``None``: the image's).
    """
    check_single_pod(spec)
    if len(name) > MPI_NAME_MAX:
        raise InvalidJobSpecError(f"MPIJob name {name!r} is longer than {MPI_NAME_MAX} characters")
    res = spec.resources
    image = resolve_image(spec, settings)
    slots = res.ntasks_per_node or slots_per_worker(res.ntasks, res.nodes)
    where = workdir or spec.workdir
    env = {"HPCAI_NTASKS": str(res.ntasks), "HPCAI_NODES": str(res.nodes), **spec.environment}

    launcher: dict[str, Any] = {
        "name": LAUNCHER_CONTAINER,
        "image": image,
        "command": ["/bin/bash", "-c", spec.script],
        "env": env_list(env),
        "resources": container_resources(settings.launcher_cpu, settings.launcher_memory_bytes, 0),
    }
    worker: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": image,
        "command": list(settings.mpi_worker_command),
        "env": env_list(env),
        "resources": container_resources(slots * res.cpus_per_task, res.memory_bytes, res.gpu_count),
    }
    if where:
        launcher["workingDir"] = worker["workingDir"] = where
    volumes: list[dict[str, Any]] = []
    if spec.container is not None:  # both roles see the same folders, variables and working directory
        volumes = apply_container(launcher, spec)
        apply_container(worker, spec)

    def replica(role: str, replicas: int, container: dict[str, Any], gpus: int) -> dict[str, Any]:
        pod = pod_spec(
            settings,
            [container],
            gpu_count=gpus,
            gpu_type=res.gpu_type if gpus else None,
            exclude_nodes=spec.exclude_nodes,
        )
        if volumes:
            pod["volumes"] = [dict(v) for v in volumes]
        return {
            "replicas": replicas,
            "restartPolicy": "Never",
            "template": {"metadata": {"labels": labels_for(name, spec.tag, role)}, "spec": pod},
        }

    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running", "backoffLimit": 0}
    if res.time_limit_seconds:
        run_policy["activeDeadlineSeconds"] = res.time_limit_seconds
    if settings.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {
        "apiVersion": f"{MPIJOB_GROUP}/{MPIJOB_VERSION}",
        "kind": MPIJOB_KIND,
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels_for(name, spec.tag),
            "annotations": {ANNOTATION_NAME: spec.name},
        },
        "spec": {
            "slotsPerWorker": slots,
            "mpiImplementation": settings.mpi_implementation,
            "runPolicy": run_policy,
            "mpiReplicaSpecs": {
                "Launcher": replica("launcher", 1, launcher, 0),
                "Worker": replica("worker", res.nodes, worker, res.gpu_count),
            },
        },
    }
