"""Pure builders: :class:`JobSpec` + :class:`KubernetesSettings` -> a batch/v1 Job manifest (a dict).

Every value from the spec reaches the manifest as data: the script is one argv element of
``["/bin/bash", "-c", script]`` and environment values are ``env[].value`` strings, never
interpolated into a shell line. The output is what ``kubectl apply`` would accept; tests validate
it against the official Kubernetes schemas.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec

__all__ = [
    "GPU_RESOURCE",
    "JOB_CONTAINER",
    "LABEL_JOB",
    "LABEL_MANAGED_BY",
    "LABEL_ROLE",
    "LABEL_TAG",
    "MANAGED_BY",
    "KubernetesSettings",
    "apply_container",
    "container_resources",
    "format_quantity",
    "job_manifest",
    "job_selector",
    "labels_for",
    "pod_spec",
    "tag_selector",
    "workload_name",
]

LABEL_TAG = "hpcai.io/tag"
LABEL_JOB = "hpcai.io/job"
LABEL_ROLE = "hpcai.io/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-provider-hpcai"
ANNOTATION_NAME = "hpcai.io/job-name"
GPU_RESOURCE = "nvidia.com/gpu"
JOB_CONTAINER = "job"

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z"
)
_LABEL_VALUE_RE = re.compile(r"^(|[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)\Z")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,510}\Z")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
#: Job names feed the ``job-name`` pod label (at most 63 characters).
MAX_NAME = 63


def _check_dns_label(field: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not _DNS_LABEL_RE.match(value):
        raise InvalidJobSpecError(
            f"{field} {value!r} is not a Kubernetes name: use lower-case letters, digits and '-' "
            f"(starting and ending with a letter or digit, at most {MAX_NAME} characters)"
        )
    return value


def _check_labels(field: str, labels: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
            raise InvalidJobSpecError(
                f"{field}: {key!r} is not a Kubernetes label key (e.g. 'example.com/pool')"
            )
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise InvalidJobSpecError(
                f"{field}: value {value!r} of {key} is not a label value "
                "(letters, digits, '-', '_' and '.', at most 63 characters)"
            )
        clean[key] = value
    return clean


@dataclasses.dataclass(frozen=True)
class KubernetesSettings:
    """Where and how workloads run on Kubernetes (per backend, not per job).

    :param namespace: the namespace to create workloads in.
    :param image: the container image when the job's spec names none.
    :param service_account: the pods' service account (``None``: the namespace default).
    :param image_pull_secrets: names of Secrets for private registries.
    :param priority_class: PriorityClass of CPU-only workloads (``None``: the cluster default).
    :param gpu_priority_class: PriorityClass of workloads that ask for GPUs (the chart installs
        ``hpcai-gpu``; ``None``: same as CPU workloads).
    :param gpu_type_label: node label selecting the GPU model of ``gpus="<model>:<n>"``.
    :param gpu_tolerations: tolerate the ``nvidia.com/gpu`` taint that GPU node pools carry.
    :param node_selector: extra node labels every pod must match.
    :param tolerations: extra tolerations (Kubernetes toleration dicts).
    :param ttl_seconds_after_finished: how long finished workloads stay (for their logs).
    :param mpi_implementation: ``OpenMPI``, ``Intel`` or ``MPICH`` (MPIJob ``mpiImplementation``).
    :param mpi_worker_command: argv of MPI worker containers (they run an SSH server for the launcher).
    :param launcher_cpu: CPU request of the MPI launcher pod.
    :param launcher_memory_bytes: memory of the MPI launcher pod.
    """

    namespace: str = "default"
    image: str | None = None
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None
    gpu_priority_class: str | None = "hpcai-gpu"
    gpu_type_label: str = "nvidia.com/gpu.product"
    gpu_tolerations: bool = True
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    ttl_seconds_after_finished: int | None = 3600
    mpi_implementation: str = "OpenMPI"
    mpi_worker_command: tuple[str, ...] = ("/usr/sbin/sshd", "-De")
    launcher_cpu: int = 1
    launcher_memory_bytes: int = 1024**3

    def __post_init__(self) -> None:
        _check_dns_label("namespace", self.namespace)
        for field in ("service_account", "priority_class", "gpu_priority_class"):
            value = getattr(self, field)
            if value is not None:
                _check_dns_label(field, value)
        for secret in self.image_pull_secrets:
            _check_dns_label("image_pull_secrets", secret)
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        object.__setattr__(self, "mpi_worker_command", tuple(self.mpi_worker_command))
        object.__setattr__(self, "node_selector", _check_labels("node_selector", dict(self.node_selector)))
        _check_labels("gpu_type_label", {self.gpu_type_label: "x"})
        if self.image is not None:
            check_image(self.image)
        if self.mpi_implementation not in ("OpenMPI", "Intel", "MPICH"):
            raise InvalidJobSpecError(
                f"mpi_implementation {self.mpi_implementation!r} is not one of OpenMPI, Intel, MPICH"
            )
        if self.ttl_seconds_after_finished is not None and self.ttl_seconds_after_finished < 0:
            raise InvalidJobSpecError("ttl_seconds_after_finished must be 0 or more seconds")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> KubernetesSettings:
        """Build from backend options; unknown names are errors that list the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidJobSpecError(f"unknown Kubernetes options {unknown}; allowed: {sorted(known)}")
        return cls(**{k: v for k, v in options.items() if v is not None})


def check_image(image: str) -> str:
    """Check a container image reference (``registry/repo:tag`` or ``@sha256:...``)."""
    if not isinstance(image, str) or not _IMAGE_RE.match(image):
        raise InvalidJobSpecError(f"image {image!r} is not a container image reference like 'repo/name:tag'")
    return image


def workload_name(job_name: str, suffix: str | None = None, max_len: int = MAX_NAME) -> str:
    """A unique DNS-1123 name for one submission of ``job_name`` (a random suffix per try).

    :param job_name: the spec's name (any of ``A-Za-z0-9_.-+=@``).
    :param suffix: the suffix to use (tests); random lower-case letters and digits otherwise.
    :param max_len: the longest name allowed (MPIJobs derive ``<name>-worker-<i>`` host names).
    """
    suffix = suffix or "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(8))
    base = re.sub(r"[^a-z0-9]+", "-", job_name.lower()).strip("-") or "job"
    base = base[: max_len - len(suffix) - 1].rstrip("-") or "job"
    return _check_dns_label("name", f"{base}-{suffix}")


def format_quantity(num_bytes: int) -> str:
    """Bytes as a Kubernetes quantity: ``Gi`` or ``Mi`` when exact, else MiB rounded up."""
    if num_bytes % 1024**3 == 0:
        return f"{num_bytes // 1024**3}Gi"
    return f"{-(-num_bytes // 1024**2)}Mi"


def container_resources(cpus: int, memory_bytes: int | None, gpus: int) -> dict[str, dict[str, str]]:
    """Requests equal limits (Guaranteed QoS): a container that exceeds its memory is OOMKilled.

    :param cpus: CPU cores for the container.
    :param memory_bytes: memory for the container (``None``: no request, no limit).
    :param gpus: ``nvidia.com/gpu`` devices (0: none).
    """
    requests: dict[str, str] = {"cpu": str(cpus)}
    limits: dict[str, str] = {"cpu": str(cpus)}
    if memory_bytes:
        requests["memory"] = limits["memory"] = format_quantity(memory_bytes)
    if gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    return {"requests": requests, "limits": limits}


def labels_for(name: str, tag: str | None, role: str | None = None) -> dict[str, str]:
    """Labels on the workload and its pods: reattach finds live workloads by :data:`LABEL_TAG`."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB: name}
    if tag:
        labels[LABEL_TAG] = tag
    if role:
        labels[LABEL_ROLE] = role
    return labels


def tag_selector(tag: str) -> str:
    """The label selector of every workload carrying ``tag``."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TAG}={tag}"


def job_selector(name: str) -> str:
    """The label selector of the pods of workload ``name``."""
    return f"{LABEL_JOB}={name}"


def env_list(environment: Mapping[str, str]) -> list[dict[str, str]]:
    """``env`` entries: names already validated by :class:`JobSpec`, values passed as data."""
    return [{"name": key, "value": value} for key, value in environment.items()]


def _excluded_nodes(exclude: str | None) -> list[str]:
    if not exclude:
        return []
    if "[" in exclude:
        raise InvalidJobSpecError(
            f"exclude_nodes {exclude!r}: Kubernetes needs node names listed one by one ('node1,node2')"
        )
    return [node for node in exclude.split(",") if node]


def pod_spec(
    settings: KubernetesSettings,
    containers: list[dict[str, Any]],
    *,
    gpu_count: int,
    gpu_type: str | None,
    exclude_nodes: str | None = None,
) -> dict[str, Any]:
    """The pod spec shared by Jobs and MPIJob replicas: scheduling, priority, pull secrets."""
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": containers}
    selector = dict(settings.node_selector)
    tolerations = [dict(t) for t in settings.tolerations]
    priority = settings.priority_class
    if gpu_count:
        if gpu_type:
            selector[settings.gpu_type_label] = _check_labels("gpus", {settings.gpu_type_label: gpu_type})[
                settings.gpu_type_label
            ]
        if settings.gpu_tolerations:
            tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
        priority = settings.gpu_priority_class or priority
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = tolerations
    if priority:
        spec["priorityClassName"] = priority
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    avoid = _excluded_nodes(exclude_nodes)
    if avoid:
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": avoid}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    return spec


def check_single_pod(spec: JobSpec) -> None:
    """Refuse what a one-pod Job cannot express, saying what to use instead."""
    if spec.array is not None:
        raise InvalidJobSpecError(
            f"array {spec.array!r}: job arrays are a Slurm feature; on Kubernetes map the task "
            "(dynamic task mapping) or use the slurm backend"
        )


def resolve_image(spec: JobSpec, settings: KubernetesSettings) -> str:
    """The spec's image (its container's, else ``image``), else the backend's; a clear error when none names one."""
    if spec.container is not None:
        return _container_image(spec)
    image = spec.image or settings.image
    if not image:
        raise InvalidJobSpecError(
            f"job {spec.name}: no container image; pass image= to the operator or set "
            "[hpcai] kubernetes_image (AIRFLOW__HPCAI__KUBERNETES_IMAGE)"
        )
    return check_image(image)


def job_manifest(
    spec: JobSpec, settings: KubernetesSettings, *, name: str, workdir: str | None = None
) -> dict[str, Any]:
    """A batch/v1 Job running ``spec.script`` in one pod.

    :param spec: the job (its ``nodes`` must be 1: several nodes need :func:`mpijob_manifest`).
    :param settings: namespace, image, scheduling.
    :param name: the workload name (:func:`workload_name`).
    :param workdir: the container's working directory (``None``: the image's).
    """
    check_single_pod(spec)
    res: Resources = spec.resources
    if res.nodes != 1:
        raise InvalidJobSpecError(
            f"job {spec.name} asks for {res.nodes} nodes: a Kubernetes Job runs one pod; "
            "the backend submits multi-node jobs as an MPIJob (needs the Kubeflow MPI operator)"
        )
    volumes: list[dict[str, Any]] = []
    container: dict[str, Any] = {
        "name": JOB_CONTAINER,
        "image": _container_image(spec) if spec.container is not None else resolve_image(spec, settings),
        "command": ["/bin/bash", "-c", spec.script],
        "resources": container_resources(res.total_cpus, res.memory_bytes, res.gpu_count),
    }
    if spec.environment:
        container["env"] = env_list(spec.environment)
    where = workdir or spec.workdir
    if where:
        container["workingDir"] = where
    if spec.container is not None:  # the job's container: its working folder, variables and mounts as volumes
        volumes = apply_container(container, spec)
    labels = labels_for(name, spec.tag)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": pod_spec(
                settings,
                [container],
                gpu_count=res.gpu_count,
                gpu_type=res.gpu_type,
                exclude_nodes=spec.exclude_nodes,
            ),
        },
    }
    if volumes:
        job_spec["template"]["spec"]["volumes"] = volumes
    if res.time_limit_seconds:
        job_spec["activeDeadlineSeconds"] = res.time_limit_seconds
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_NAME: spec.name},
        },
        "spec": job_spec,
    }


def _container_image(spec: JobSpec) -> str:
    """The container's image as a pod takes it (a registry reference; ``docker://`` dropped)."""
    assert spec.container is not None
    from airflow_provider_hpcai.containers.model import image_kind

    if image_kind(spec.container.image) != "reference":
        raise InvalidJobSpecError(
            f"job {spec.name}: Kubernetes pulls images from a registry; {spec.container.image!r} is a path (a bundle "
            "or image file on a node): push the image and give its reference, e.g. 'registry.example.org/team/stage:1.2'"
        )
    return check_image(spec.container.image.removeprefix("docker://"))


def apply_container(container: dict[str, Any], spec: JobSpec) -> list[dict[str, Any]]:
    """Add ``spec.container``'s working directory, variables and mounts to a pod's container; return the volumes."""
    from airflow_provider_hpcai.containers.kubernetes import kubernetes_container

    assert spec.container is not None
    mapped = kubernetes_container(spec.container, name=container["name"])
    part = mapped["container"]
    if "workingDir" in part:
        container["workingDir"] = part["workingDir"]
    if part.get("env"):  # the container's variables win over the job's of the same name
        names = {e["name"] for e in part["env"]}
        container["env"] = [e for e in container.get("env", []) if e["name"] not in names] + part["env"]
    if part.get("volumeMounts"):
        container["volumeMounts"] = part["volumeMounts"]
    return list(mapped["volumes"])
