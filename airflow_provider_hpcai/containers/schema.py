"""JSON schema of a container, for templates (``template.yaml``'s ``image``) and the UI form.

It describes the shape; :class:`~.model.Container` remains the judge (it also checks references,
``..`` and the charset, with messages that say what to do).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.containers.model import (
    MAX_ENV,
    MAX_ENV_VALUE,
    MAX_IMAGE_LENGTH,
    MAX_MOUNTS,
    RUNTIMES,
)

__all__ = ["CONTAINER_SCHEMA"]

_PATH = {"type": "string", "pattern": r"^/[A-Za-z0-9_.+@=/-]*$", "maxLength": 1024}

#: A JSON schema (draft 2020-12) fragment: an image reference alone, or the full mapping.
CONTAINER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Container",
    "description": "The image a stage runs in, on Slurm (oci, pyxis, apptainer), Kubernetes or locally (podman, runc).",
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_IMAGE_LENGTH, "description": "an image reference or bundle path"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "minLength": 1, "maxLength": MAX_IMAGE_LENGTH,
                          "description": "registry reference, or absolute path of an OCI bundle, .sif or .sqsh"},
                "mounts": {
                    "type": "array",
                    "maxItems": MAX_MOUNTS,
                    "items": {
                        "oneOf": [
                            {"type": "string", "pattern": r"^/[A-Za-z0-9_.+@=/-]*(:/[A-Za-z0-9_.+@=/-]*(:(ro|rw))?)?$"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["source"],
                                "properties": {"source": _PATH, "target": _PATH, "read_only": {"type": "boolean"}},
                            },
                        ]
                    },
                },
                "workdir": {"oneOf": [_PATH, {"type": "null"}]},
                "env": {
                    "type": "object",
                    "maxProperties": MAX_ENV,
                    "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                    "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE, "pattern": r"^[^\n\r\u0000]*$"},
                },
                "gpus": {"type": "boolean"},
                "runtime": {"enum": list(RUNTIMES)},
            },
        },
    ],
}
