"""The shape of a template manifest: names, limits and the JSON Schema (pure data).

:mod:`.manifest` parses and checks a manifest against these; the finer checks (semver, the stage
graph, parameter schemas) are code there.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_hpcai.backends import BACKENDS as _BACKEND_REGISTRY
from airflow_provider_hpcai.containers.schema import CONTAINER_SCHEMA

__all__ = [
    "BACKENDS",
    "BASH_ARGS_SCHEMA",
    "ENTRYPOINT_RE",
    "MANIFEST_SCHEMA",
    "MAX_MANIFEST_BYTES",
    "MAX_PARAMS_BYTES",
    "MAX_STAGES",
    "NAME_RE",
    "SEMVER_RE",
    "STAGE_ID_RE",
    "STAGE_KINDS",
]

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
STAGE_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")
ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*\Z")
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER_RE = re.compile(
    rf"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\Z"
)
MAX_MANIFEST_BYTES = 256 * 1024
MAX_PARAMS_BYTES = 64 * 1024
MAX_STAGES = 200
#: Stage kinds a declarative manifest may use (the operator classes live in ``stages.py``).
STAGE_KINDS = ("bash", "empty", "slurm_job", "simulation", "kubernetes_job", "dask_analysis", "template")
#: The execution backends a stage may name: the registry's (one place to add a backend).
BACKENDS = tuple(_BACKEND_REGISTRY)

_TEXT = {"type": "string", "maxLength": 200}
_SLUG_LIST = {"type": "array", "maxItems": 32, "items": {"type": "string", "pattern": NAME_RE.pattern}}
#: The shape of a manifest; the finer checks (semver, graph, schema) follow in code.
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "version", "title", "parameters"],
    "properties": {
        "name": {},  # checked by check_name / check_version, whose messages say more
        "version": {},
        "title": {**_TEXT, "minLength": 1},
        "description": {"type": "string", "maxLength": 20000},
        "domain": {"type": "string", "pattern": NAME_RE.pattern},
        "tags": _SLUG_LIST,
        "maintainer": _TEXT,
        "parameters": {"type": "object"},
        "resources": {"type": "object"},
        # Its shape here; every field is then judged by Container (unknown fields refused), whose
        # messages say what is wrong (CONTAINER_SCHEMA's oneOf would only say "not valid").
        "image": {"type": ["string", "object"], "maxLength": CONTAINER_SCHEMA["oneOf"][0]["maxLength"]},
        "backends": {"type": "array", "maxItems": 8, "items": {"enum": list(BACKENDS)}},
        "entrypoint": {"type": "string", "maxLength": 300},
        "provenance": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "composed_by": _TEXT,
                "composed_at": {"type": "string", "maxLength": 64},
                "from": {
                    "type": "array",
                    "maxItems": MAX_STAGES + 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "version"],
                        "properties": {
                            "name": {"type": "string", "pattern": NAME_RE.pattern},
                            "version": {"type": "string", "maxLength": 64},
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        },
                    },
                },
            },
        },
        "stages": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_STAGES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "kind"],
                "properties": {
                    "id": {"type": "string", "pattern": STAGE_ID_RE.pattern},
                    "kind": {"enum": list(STAGE_KINDS)},
                    "depends_on": {"type": "array", "maxItems": MAX_STAGES, "items": {"type": "string"}},
                    "map_over": {"type": "string", "pattern": STAGE_ID_RE.pattern},
                    "args": {"type": "object"},
                },
            },
        },
    },
}
BASH_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["argv"],
    "properties": {
        "argv": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": ["string", "number"]}},
        "env": {
            "type": "object",
            "maxProperties": 64,
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z"},
            "additionalProperties": {"type": ["string", "number"]},
        },
    },
}
