"""The composer's document: a workflow as nodes and edges, to and from a template manifest.

The Compose page edits a *document*::

    {"template": {name, version, title, ..., parameters, resources, backends[, entrypoint]},
     "nodes": [{"id", "kind", "args", "map_over", "position": {"x", "y"}}],
     "edges": [{"source", "target"}],
     "base": {"name", "version"} | null}

Each node is one stage of a declarative manifest (``stages:``); an edge ``a -> b`` puts ``a``
in ``b``'s ``depends_on``. A template built by a Python factory (``entrypoint``) opens with no
nodes: the page shows the factory as one fixed node, and only its metadata and parameters
change.

Round trip: :func:`document_from_manifest` then :func:`manifest_from_document` gives back the
published bytes when nothing changed (the data is compared, then the stored source is reused,
comments and layout included). A changed workflow is written as canonical YAML
(:func:`dump_manifest`), which reads back and dumps to the same bytes, and carries its
provenance: who composed it, when, and from which template versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.manifest_schema import MAX_STAGES

__all__ = [
    "DOCUMENT_SCHEMA",
    "META_KEYS",
    "ComposedManifest",
    "document_from_manifest",
    "dump_manifest",
    "manifest_data",
    "manifest_from_document",
    "next_version",
]

#: Manifest keys the document's ``template`` part carries, in the order they are written.
META_KEYS = ("name", "version", "title", "description", "domain", "tags", "maintainer", "parameters",
             "resources", "backends", "entrypoint")
_NODE_ID = r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z"
MAX_EDGES = 4 * MAX_STAGES
#: The document's shape; the manifest checks and :mod:`.compose_check` do the rest.
DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["template", "nodes", "edges"],
    "properties": {
        "template": {"type": "object", "maxProperties": len(META_KEYS) + 1},
        "nodes": {
            "type": "array",
            "maxItems": MAX_STAGES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "kind"],
                "properties": {
                    "id": {"type": "string", "pattern": _NODE_ID},
                    "kind": {"type": "string", "maxLength": 32},
                    "args": {"type": "object"},
                    "map_over": {"type": ["string", "null"], "pattern": _NODE_ID},
                    "position": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    },
                },
            },
        },
        "edges": {
            "type": "array",
            "maxItems": MAX_EDGES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["source", "target"],
                "properties": {
                    "source": {"type": "string", "pattern": _NODE_ID},
                    "target": {"type": "string", "pattern": _NODE_ID},
                },
            },
        },
        "base": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["name", "version"],
            "properties": {"name": {"type": "string", "maxLength": 64}, "version": {"type": "string", "maxLength": 64}},
        },
    },
}


def _layout(stages: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Positions for opened stages: one column per depth in the graph, rows in manifest order."""
    depth: dict[str, int] = {}
    ids = {s["id"] for s in stages}
    for _ in range(len(stages) + 1):
        changed = False
        for stage in stages:
            deps = [d for d in stage.get("depends_on") or () if d in ids]
            value = 1 + max((depth.get(d, 0) for d in deps), default=-1)
            if depth.get(stage["id"]) != value and value <= len(stages):
                depth[stage["id"]] = value
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    out = {}
    for stage in stages:
        column = depth.get(stage["id"], 0)
        row = rows.get(column, 0)
        rows[column] = row + 1
        out[stage["id"]] = {"x": 40.0 + 280.0 * column, "y": 40.0 + 140.0 * row}
    return out


def document_from_manifest(raw: Mapping[str, Any], *, base: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The editor document of a (parsed, valid) manifest's data.

    :param raw: the manifest as data (``TemplateManifest.raw``).
    :param base: ``{"name", "version"}`` of the published version it came from.
    """
    data = json.loads(json.dumps(dict(raw)))
    stages = list(data.get("stages") or [])
    positions = _layout(stages)
    nodes, edges = [], []
    for stage in stages:
        node = {"id": stage["id"], "kind": stage["kind"], "args": stage.get("args") or {},
                "map_over": stage.get("map_over"), "position": positions[stage["id"]]}
        nodes.append(node)
        edges.extend({"source": dep, "target": stage["id"]} for dep in stage.get("depends_on") or [])
    template = {key: data[key] for key in META_KEYS if key in data}
    return {"template": template, "nodes": nodes, "edges": edges, "base": dict(base) if base else None}


def manifest_data(document: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest data a (shape-checked) document stands for, keys in :data:`META_KEYS` order."""
    template = document.get("template") or {}
    unknown = sorted(set(template) - set(META_KEYS))
    if unknown:
        raise TemplateValidationError(
            f"template: {', '.join(unknown)} cannot be set in the composer; it sets {', '.join(META_KEYS)}"
        )
    data: dict[str, Any] = {key: template[key] for key in META_KEYS if key in template}
    nodes = list(document.get("nodes") or [])
    if nodes:
        stages = []
        for node in nodes:
            stage: dict[str, Any] = {"id": node["id"], "kind": node["kind"]}
            deps = [e["source"] for e in document.get("edges") or [] if e["target"] == node["id"]]
            if deps:
                stage["depends_on"] = deps
            if node.get("map_over"):
                stage["map_over"] = node["map_over"]
            if node.get("args"):
                stage["args"] = node["args"]
            stages.append(stage)
        data["stages"] = stages
    return data


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value used twice in full each time: manifests refuse aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_manifest(data: Mapping[str, Any]) -> str:
    """Canonical YAML of manifest data: block style, keys in the given order, UTF-8 text, no aliases."""
    return yaml.dump(dict(data), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=4096)


def _without_provenance(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in data.items() if k != "provenance"}))


def next_version(version: str, taken: list[str]) -> str:
    """The next free patch version after ``version`` (``1.2.3`` -> ``1.2.4``; pre-release and build dropped)."""
    core = version.split("+", 1)[0].split("-", 1)[0]
    try:
        major, minor, patch = (int(p) for p in core.split("."))
    except ValueError:
        return "1.0.0"
    candidate = f"{major}.{minor}.{patch + 1}"
    while candidate in taken:
        patch += 1
        candidate = f"{major}.{minor}.{patch + 1}"
    return candidate


class ComposedManifest(dict):
    """What saving a document gives: ``text``, ``unchanged`` and ``data``."""


def manifest_from_document(
    document: Mapping[str, Any],
    *,
    base: Any | None = None,
    composed_by: str | None = None,
    sources: list[dict[str, str]] | None = None,
    now: str | None = None,
) -> ComposedManifest:
    """The manifest text for ``document``.

    :param base: the ``TemplateVersion`` the document was opened from (``None`` for a new one).
        When the document still says what ``base`` says, its stored source is returned as is.
    :param composed_by: who composed it (recorded in ``provenance`` of a changed workflow).
    :param sources: the template versions it was made from (``{"name", "version", "sha256"}``);
        the base first.
    :param now: the time to record (ISO 8601; default now).
    """
    data = manifest_data(document)
    if base is not None and _without_provenance(data) == _without_provenance(base.manifest.raw):
        return ComposedManifest(text=base.source, unchanged=True, data=json.loads(json.dumps(dict(base.manifest.raw))))
    if composed_by is not None:
        data["provenance"] = {
            "composed_by": composed_by[:200],
            "composed_at": now or datetime.now(UTC).isoformat(timespec="seconds"),
            "from": list(sources or []),
        }
    return ComposedManifest(text=dump_manifest(data), unchanged=False, data=data)
