"""A :class:`~.model.Container` as a Kubernetes container and its volumes (plain dicts).

The fields follow the core/v1 ``Container`` and ``Volume`` objects
(https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/): ``image``,
``workingDir``, ``env`` (name/value), ``volumeMounts`` (name, mountPath, readOnly, subPath) and
pod ``volumes``. A mount's source becomes a ``hostPath`` volume (the node's folder, as on Slurm),
or, when it lies under a folder named in ``claims``, a ``persistentVolumeClaim`` with the rest
of the path as ``subPath``. GPUs are requested through the pod's resources (``nvidia.com/gpu``
limits from :class:`~airflow_provider_hpcai.resources.Resources`), not here. Tested against the
official schemas of Kubernetes 1.30 and 1.33 (kubernetes-validate).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_hpcai.containers.model import Container, check_path, image_kind
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["kubernetes_container"]


def _claim_for(source: str, claims: Mapping[str, str]) -> tuple[str, str] | None:
    best: tuple[str, str] | None = None
    for prefix, claim in claims.items():
        root = check_path("claim folder", prefix)
        inside = source == root or source.startswith(root.rstrip("/") + "/")
        if inside and (best is None or len(root) > len(best[0])):
            best = (root, claim)
    if best is None:
        return None
    sub = posixpath.relpath(source, best[0])
    return best[1], "" if sub == "." else sub


def kubernetes_container(
    container: Container,
    *,
    name: str = "stage",
    command: Sequence[str] | None = None,
    claims: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``{"container": {...}, "volumes": [...]}`` for a pod spec.

    :param container: the container (its image must be a registry reference).
    :param name: the container's name in the pod (a DNS label).
    :param command: the command (``command`` of the container; the image's entrypoint when ``None``).
    :param claims: host folder -> PersistentVolumeClaim name, for mounts that live on a claim.
    """
    if image_kind(container.image) != "reference":
        raise InvalidJobSpecError(
            f"Kubernetes pulls images from a registry; {container.image!r} is a path: push the image and use its reference"
        )
    if not name or len(name) > 63 or not all(c.isalnum() and c.islower() or c.isdigit() or c == "-" for c in name) \
            or name[0] == "-" or name[-1] == "-":
        raise InvalidJobSpecError(f"container name {name!r} must be a DNS label: lower-case letters, digits and '-'")
    for claim in (claims or {}).values():
        if not isinstance(claim, str) or not claim or len(claim) > 253 or not all(
                c.islower() or c.isdigit() or c in "-." for c in claim):
            raise InvalidJobSpecError(f"claim name {claim!r} must be a DNS subdomain (lower-case letters, digits, '-', '.')")
    spec: dict[str, Any] = {"name": name, "image": container.image.removeprefix("docker://")}
    if command is not None:
        if isinstance(command, str) or not command or not all(isinstance(a, str) and "\x00" not in a for a in command):
            raise InvalidJobSpecError("command must be a non-empty list of text arguments")
        spec["command"] = list(command)
    if container.workdir is not None:
        spec["workingDir"] = container.workdir
    if container.env:
        spec["env"] = [{"name": k, "value": v} for k, v in container.env.items()]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    by_volume: dict[tuple[str, str], str] = {}
    for index, m in enumerate(container.mounts):
        claim = _claim_for(m.source, claims or {})
        key = ("pvc", claim[0]) if claim else ("host", m.source)
        vol_name = by_volume.get(key)
        if vol_name is None:
            vol_name = f"hpcai-mount-{index}"
            by_volume[key] = vol_name
            if claim:
                volumes.append({"name": vol_name, "persistentVolumeClaim": {"claimName": claim[0]}})
            else:
                volumes.append({"name": vol_name, "hostPath": {"path": m.source}})
        mount: dict[str, Any] = {"name": vol_name, "mountPath": m.target, "readOnly": m.read_only}
        if claim and claim[1]:
            mount["subPath"] = claim[1]
        mounts.append(mount)
    if mounts:
        spec["volumeMounts"] = mounts
    return {"container": spec, "volumes": volumes}
