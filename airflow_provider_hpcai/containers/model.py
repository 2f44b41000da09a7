"""What container a stage runs in, independent of where it runs.

:class:`Container` is pure data, validated once on construction like
:class:`~airflow_provider_hpcai.resources.Resources`. Every field that a builder later puts on a
command line, in an ``#SBATCH`` line, in an OCI ``config.json`` or in a pod spec is checked here
against a conservative charset, so no value can carry a shell metacharacter, a separator of one
of the runtimes' own list syntaxes (``:`` and ``,`` in bind lists, ``%`` in Slurm patterns), a
new line or a NUL byte.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = [
    "RUNTIMES",
    "Container",
    "Mount",
    "Runtime",
    "check_image",
    "image_kind",
]

Runtime = Literal["auto", "oci", "pyxis", "apptainer", "podman", "kubernetes"]
#: Every runtime a :class:`Container` may name (``auto``: the backend picks one it offers).
RUNTIMES: tuple[str, ...] = get_args(Runtime)

#: Longest image reference (the distribution spec caps a repository name at 255 characters).
MAX_IMAGE_LENGTH = 512
MAX_PATH_LENGTH = 1024
MAX_MOUNTS = 64
MAX_ENV = 128
MAX_ENV_VALUE = 4096

# Paths: absolute, and only characters that mean nothing to a shell, to Slurm's % patterns, or to
# the "src:dst:flags,src:dst" lists of pyxis, Apptainer and podman.
_PATH_CHARS_RE = re.compile(r"^/[A-Za-z0-9_.+@=/-]*\Z")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# Image references (github.com/distribution/reference): [domain[:port]/]path[:tag][@digest].
_DOMAIN_RE = re.compile(r"^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,20})(?::[0-9]{1,5})?\Z")
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,128}\Z")
#: Transport prefixes a reference may carry (Apptainer's and podman's spelling of "a registry image").
_SCHEMES = ("docker://",)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"...' ({len(str(value))} characters)"


def _check_text(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidJobSpecError(f"container {field} must be text, not {type(value).__name__}")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise InvalidJobSpecError(
            f"container {field} {_shown(value)} holds a NUL byte or a line break; remove it"
        )
    if len(value) > limit:
        raise InvalidJobSpecError(f"container {field} is {len(value)} characters long; at most {limit} are accepted")
    return value


def check_path(field: str, value: object) -> str:
    """Validate an absolute path inside or outside the container and return it.

    :raises InvalidJobSpecError: relative, ``..``, or characters outside ``A-Za-z0-9_.+@=/-``.
    """
    text = _check_text(field, value, MAX_PATH_LENGTH)
    if not text.startswith("/"):
        raise InvalidJobSpecError(
            f"container {field} {_shown(text)} is relative; give an absolute path (for example '/data')"
        )
    if ".." in text.split("/"):
        raise InvalidJobSpecError(
            f"container {field} {_shown(text)} climbs out with '..'; give the folder's absolute path"
        )
    if not _PATH_CHARS_RE.match(text):
        raise InvalidJobSpecError(
            f"container {field} {_shown(text)} has characters that are not allowed; use letters, digits and "
            "'_ . + @ = - /' (no spaces, ':', ',', '%', quotes or shell characters: link or rename the folder)"
        )
    return posixpath.normpath(text) if text != "/" else "/"


def image_kind(image: str) -> Literal["path", "reference"]:
    """``"path"`` for an absolute path (an OCI bundle, a ``.sif``, a ``.sqsh``), else ``"reference"``."""
    return "path" if image.startswith("/") else "reference"


def _split_reference(ref: str) -> tuple[str | None, str, str | None, str | None]:
    """``[domain/]path[:tag][@digest]`` -> (domain, path, tag, digest); no patterns that backtrack."""
    rest, _, digest = ref.partition("@")
    first, slash, remainder = rest.partition("/")
    domain = None
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, rest = first, remainder
    name, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not colon:
        name, tag = rest, ""
    return domain, name, (tag or None) if colon else None, digest or None


def check_image(image: object) -> str:
    """Validate an image: an absolute path, or a registry reference ``[host[:port]/]name[:tag][@digest]``.

    :raises InvalidJobSpecError: with what a valid reference looks like.
    """
    text = _check_text("image", image, MAX_IMAGE_LENGTH)
    if not text:
        raise InvalidJobSpecError("container image is empty; give a reference such as 'docker.io/library/python:3.11'")
    if text.startswith("/"):
        return check_path("image", text)
    bare = text
    for scheme in _SCHEMES:
        bare = bare.removeprefix(scheme)
    usage = (
        "use a registry reference such as 'registry.example.org:5000/team/stage:1.2' (lower-case name, "
        "optional ':tag' and '@sha256:<hex>') or the absolute path of a bundle or image file"
    )
    domain, name, tag, digest = _split_reference(bare)
    if not name or (domain is not None and not _DOMAIN_RE.match(domain)):
        raise InvalidJobSpecError(f"container image {_shown(text)} is not an image reference; {usage}")
    if len(name) > 255 or not all(_COMPONENT_RE.match(part) for part in name.split("/")):
        raise InvalidJobSpecError(f"container image {_shown(text)} has an invalid name {_shown(name)}; {usage}")
    if tag is not None and not _TAG_RE.match(tag):
        raise InvalidJobSpecError(f"container image {_shown(text)} has an invalid tag {_shown(tag)}; {usage}")
    if digest is not None and not _DIGEST_RE.match(digest):
        raise InvalidJobSpecError(f"container image {_shown(text)} has an invalid digest {_shown(digest)}; {usage}")
    return text


@dataclasses.dataclass(frozen=True)
class Mount:
    """One bind mount: a host folder or file seen at ``target`` inside the container.

    :param source: absolute path on the node (or, on Kubernetes, the host path or claim folder).
    :param target: absolute path inside the container.
    :param read_only: mount it read-only (the default: a stage writes only where it is told to).
    """

    source: str
    target: str
    read_only: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", check_path("mount source", self.source))
        object.__setattr__(self, "target", check_path("mount target", self.target))
        if self.target == "/":
            raise InvalidJobSpecError("a mount target cannot be '/' (it would hide the image); pick a folder such as '/data'")
        if not isinstance(self.read_only, bool):
            raise InvalidJobSpecError(f"mount read_only must be true or false, not {self.read_only!r}")

    @classmethod
    def parse(cls, value: Mount | str | Mapping[str, Any]) -> Mount:
        """Build from a :class:`Mount`, ``"src:dst[:ro|rw]"`` or ``{"source", "target", "read_only"}``."""
        if isinstance(value, Mount):
            return value
        if isinstance(value, str):
            _check_text("mount", value, 2 * MAX_PATH_LENGTH + 3)
            parts = value.split(":")
            if len(parts) == 1:
                parts = [parts[0], parts[0]]
            if len(parts) == 3 and parts[2] in ("ro", "rw"):
                return cls(parts[0], parts[1], read_only=parts[2] == "ro")
            if len(parts) == 2:
                return cls(parts[0], parts[1])
            raise InvalidJobSpecError(
                f"mount {_shown(value)} is not 'source:target' or 'source:target:ro|rw' (both absolute paths)"
            )
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"source", "target", "read_only"})
            if unknown or "source" not in value:
                raise InvalidJobSpecError(
                    f"a mount mapping needs 'source' (and may have 'target', 'read_only'); got keys {sorted(value)}"
                )
            return cls(value["source"], value.get("target", value["source"]), value.get("read_only", True))
        raise InvalidJobSpecError(f"a mount must be 'source:target[:ro|rw]' or a mapping, not {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "read_only": self.read_only}


@dataclasses.dataclass(frozen=True)
class Container:
    """The image a stage runs in, and how the image sees the node.

    :param image: a registry reference (``"registry.example.org/team/stage:1.2"``; Pyxis, podman,
        Apptainer via ``docker://``, Kubernetes) or an absolute path: an OCI bundle folder (Slurm's
        ``--container``, runc/crun), a ``.sif`` (Apptainer) or a ``.sqsh`` (Pyxis/enroot).
    :param mounts: bind mounts, as :class:`Mount`, ``"src:dst[:ro|rw]"`` or mappings (read-only by
        default).
    :param workdir: working directory inside the container (absolute); ``None``: the image's.
    :param env: environment variables set inside the container. Values may hold any text but a
        NUL byte or a line break; they never appear on a command line (they travel in the
        environment of the launching process, or in a pod spec).
    :param gpus: pass the node's GPUs through (Apptainer ``--nv``, podman CDI
        ``nvidia.com/gpu=all``; Pyxis/enroot and Kubernetes expose the GPUs Slurm or the pod
        requested by themselves).
    :param runtime: ``"auto"`` (the backend picks one it offers), ``"oci"`` (Slurm
        ``--container`` with runc/crun), ``"pyxis"``, ``"apptainer"``, ``"podman"`` or
        ``"kubernetes"``.
    """

    image: str
    mounts: tuple[Mount, ...] = ()
    workdir: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gpus: bool = False
    runtime: Runtime = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", check_image(self.image))
        if isinstance(self.mounts, (str, Mapping)) or not isinstance(self.mounts, (list, tuple)):
            raise InvalidJobSpecError("container mounts must be a list of 'src:dst[:ro|rw]' or mappings")
        if len(self.mounts) > MAX_MOUNTS:
            raise InvalidJobSpecError(f"container has {len(self.mounts)} mounts; at most {MAX_MOUNTS} are accepted")
        mounts = tuple(Mount.parse(m) for m in self.mounts)
        targets = [m.target for m in mounts]
        if len(set(targets)) != len(targets):
            raise InvalidJobSpecError(f"two mounts share a target in {targets}; give each its own folder")
        object.__setattr__(self, "mounts", mounts)
        if self.workdir is not None:
            object.__setattr__(self, "workdir", check_path("workdir", self.workdir))
        object.__setattr__(self, "env", _check_env(self.env))
        if not isinstance(self.gpus, bool):
            raise InvalidJobSpecError(f"container gpus must be true or false, not {self.gpus!r}")
        if self.runtime not in RUNTIMES:
            raise InvalidJobSpecError(f"container runtime {_shown(self.runtime)} is not one of {', '.join(RUNTIMES)}")
        if self.runtime == "oci" and image_kind(self.image) != "path":
            raise InvalidJobSpecError(
                f"runtime 'oci' runs an OCI bundle folder, and {_shown(self.image)} is a reference; give the bundle's "
                "absolute path (scripts/build-image prints one) or pick runtime 'pyxis', 'podman' or 'apptainer'"
            )
        if self.runtime == "kubernetes" and image_kind(self.image) != "reference":
            raise InvalidJobSpecError(
                f"Kubernetes pulls images from a registry; {_shown(self.image)} is a path: push the image and give "
                "its reference (for example 'registry.example.org/team/stage:1.2')"
            )

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Primitive form (JSON-safe) for XCom and templates; :meth:`from_dict` reads it back."""
        return {
            "image": self.image,
            "mounts": [m.to_dict() for m in self.mounts],
            "workdir": self.workdir,
            "env": dict(self.env),
            "gpus": self.gpus,
            "runtime": self.runtime,
        }

    @classmethod
    def from_dict(cls, data: Container | str | Mapping[str, Any]) -> Container:
        """Build from :meth:`to_dict` output, a user mapping, or an image reference alone.

        :raises InvalidJobSpecError: on unknown keys or invalid values.
        """
        if isinstance(data, Container):
            return data
        if isinstance(data, str):
            return cls(image=data)
        if not isinstance(data, Mapping):
            raise InvalidJobSpecError(f"container must be an image reference or a mapping, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidJobSpecError(f"unknown container fields {unknown}; allowed: {sorted(known)}")
        if "image" not in data:
            raise InvalidJobSpecError("container needs an 'image'")
        values = {k: v for k, v in data.items() if v is not None}
        if "mounts" in values and isinstance(values["mounts"], list):
            values["mounts"] = tuple(values["mounts"])
        return cls(**values)

    def replace(self, **changes: Any) -> Container:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def __hash__(self) -> int:  # env is a dict: hash the primitive form (equal containers, equal hashes)
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _check_env(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidJobSpecError(f"container env must be a mapping of names to text, not {type(env).__name__}")
    if len(env) > MAX_ENV:
        raise InvalidJobSpecError(f"container env has {len(env)} variables; at most {MAX_ENV} are accepted")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            raise InvalidJobSpecError(
                f"container env name {_shown(name)} is not allowed; use letters, digits and '_' "
                "(not starting with a digit, at most 128 characters)"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidJobSpecError(f"container env {name} must be text or a number, not {type(value).__name__}")
        text = _check_text(f"env {name}", str(value), MAX_ENV_VALUE)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJobSpecError(f"container env {name} is not valid UTF-8 text; re-encode it") from None
        out[name] = text
    return out
