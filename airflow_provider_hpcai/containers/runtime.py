"""Which runtime runs a container on a given backend: ``auto`` resolved, a choice checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from airflow_provider_hpcai.containers.errors import RuntimeNotOfferedError
from airflow_provider_hpcai.containers.model import RUNTIMES, Container, image_kind
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["BACKEND_RUNTIMES", "connection_runtime", "container_for_backend", "offered_runtimes", "resolve_runtime"]

Backend = Literal["slurm", "kubernetes", "local"]

#: Runtimes each backend can drive, in the order ``auto`` prefers them (data, not if-chains).
BACKEND_RUNTIMES: dict[str, tuple[str, ...]] = {
    "slurm": ("oci", "pyxis", "apptainer"),
    "kubernetes": ("kubernetes",),
    "local": ("podman", "oci"),
}


def _fits(runtime: str, image: str) -> bool:
    """Whether ``runtime`` can run ``image`` (a bundle folder, a .sif, a .sqsh or a reference)."""
    kind = image_kind(image)
    if runtime == "oci":
        return kind == "path" and not image.endswith((".sif", ".sqsh", ".squashfs"))
    if runtime == "pyxis":
        return kind == "reference" or image.endswith((".sqsh", ".squashfs"))
    if runtime == "apptainer":
        return kind == "reference" or image.endswith(".sif") or not image.endswith((".sqsh", ".squashfs"))
    if runtime == "podman":
        return not image.endswith((".sif", ".sqsh", ".squashfs"))
    return kind == "reference"  # kubernetes


def resolve_runtime(container: Container, backend: Backend, offered: Sequence[str] | None = None) -> str:
    """The runtime to use for ``container`` on ``backend``.

    :param container: the container.
    :param backend: ``"slurm"``, ``"kubernetes"`` or ``"local"``.
    :param offered: what the connection's cluster offers (e.g. from its ``container_runtimes``
        extra); default: everything the backend can drive.
    :raises RuntimeNotOfferedError: the asked runtime is not offered, or none offered fits the image.
    """
    if backend not in BACKEND_RUNTIMES:
        raise RuntimeNotOfferedError(f"unknown backend {backend!r}; one of {', '.join(BACKEND_RUNTIMES)}")
    possible = BACKEND_RUNTIMES[backend]
    available = [r for r in possible if offered is None or r in offered]
    unknown = sorted(set(offered or ()) - set(RUNTIMES))
    if unknown:
        raise RuntimeNotOfferedError(f"the connection names unknown container runtimes {unknown}; known: {', '.join(RUNTIMES[1:])}")
    if container.runtime != "auto":
        if container.runtime not in available:
            raise RuntimeNotOfferedError(
                f"container runtime {container.runtime!r} is not offered on this {backend} connection "
                f"(it offers: {', '.join(available) or 'none'}); pick one of those, or runtime 'auto'"
            )
        if not _fits(container.runtime, container.image):
            raise RuntimeNotOfferedError(
                f"runtime {container.runtime!r} cannot run {container.image!r}: an OCI bundle folder needs 'oci' "
                "(or 'podman'), a .sif 'apptainer', a .sqsh 'pyxis', a registry reference 'pyxis', 'apptainer', "
                "'podman' or 'kubernetes'"
            )
        return container.runtime
    for runtime in available:
        if _fits(runtime, container.image):
            return runtime
    raise RuntimeNotOfferedError(
        f"no container runtime offered on this {backend} connection ({', '.join(available) or 'none'}) can run "
        f"{container.image!r}; give an image those runtimes take, or ask for a cluster that offers another runtime"
    )


def offered_runtimes(extras: Mapping[str, Any]) -> list[str] | None:
    """The connection's ``container_runtimes`` extra (``"oci,pyxis"`` or a list); ``None`` when absent.

    :raises RuntimeNotOfferedError: the extra is neither text nor a list of names.
    """
    value = extras.get("container_runtimes")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RuntimeNotOfferedError(
        f"the connection's container_runtimes extra must be a list of runtime names or 'oci,pyxis'-style text, "
        f"not {type(value).__name__}"
    )


def connection_runtime(container: Container, backend: Backend, extras: Mapping[str, Any]) -> Container:
    """``container`` with its runtime resolved against what the connection offers (its extras).

    :raises RuntimeNotOfferedError: before anything is submitted, naming what the cluster offers.
    """
    return container.replace(runtime=resolve_runtime(container, backend, offered_runtimes(extras)))


#: Backend registry names -> the runtime family that maps a container on them (``None``: none).
BACKEND_KINDS: dict[str, str | None] = {"slurm": "slurm", "kubernetes": "kubernetes", "local": "local",
                                        "gridengine": None}


def container_for_backend(value: object, backend: str, *, task: object = None) -> Container | None:
    """An operator's ``container=`` argument, checked at parse time for ``backend``.

    :param value: a :class:`Container`, a mapping of its fields, an image reference, or ``None``.
    :param backend: the operator's backend name.
    :param task: the task id, for the message.
    :raises InvalidJobSpecError: an invalid container, or one the backend cannot run (Grid Engine
        runs none; a runtime of another backend, e.g. ``kubernetes`` on Slurm).
    """
    if value is None:
        return None
    where = f"task {task}: " if task else ""
    try:
        container = Container.from_dict(value)  # type: ignore[arg-type]
    except InvalidJobSpecError as err:
        raise InvalidJobSpecError(f"{where}{err}") from None
    kind = BACKEND_KINDS.get(backend, "slurm" if backend not in BACKEND_KINDS else None)
    if backend in BACKEND_KINDS and kind is None:
        raise InvalidJobSpecError(
            f"{where}the {backend} backend runs no containers (container={container.image!r}): run the stage on "
            "the slurm, kubernetes or local backend, or drop container="
        )
    if kind == "kubernetes" and image_kind(container.image) != "reference":
        raise InvalidJobSpecError(
            f"{where}Kubernetes pulls images from a registry; {container.image!r} is a path (a bundle or image file "
            "on a node): push the image and give its reference, e.g. 'registry.example.org/team/stage:1.2'"
        )
    if kind is not None and backend in BACKEND_KINDS:
        try:
            resolve_runtime(container, kind)  # type: ignore[arg-type]
        except RuntimeNotOfferedError as err:
            raise InvalidJobSpecError(f"{where}{err}") from None
    return container
