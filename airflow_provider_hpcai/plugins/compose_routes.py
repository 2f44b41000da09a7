"""Routes of the Compose page: palette, open a template as a graph, validate live, save a version.

=====================================  ======  =====================================================
route                                  check   what
=====================================  ======  =====================================================
``GET /api/compose/palette``           READ    stage kinds with the JSON Schema of their forms
``GET /api/compose/open/{name}``       READ    a published version as an editor document
``POST /api/compose/validate``         READ    every problem, on the node it concerns (no writing)
``POST /api/compose/save``             ADMIN   publish as a new immutable version, with provenance
=====================================  ======  =====================================================

Validation always runs here: the page's own checks only mirror these answers. The body is
bounded by :mod:`.limits` (size, JSON depth) and by the document schema (stages, edges).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_hpcai.plugins.auth import ADMIN, READ, same_origin_write, user_name
from airflow_provider_hpcai.plugins.limits import parse_json
from airflow_provider_hpcai.templates.errors import TemplateConflictError

__all__ = ["add_compose_routes"]


def _uses_slurm(document: Any) -> bool:
    nodes = document.get("nodes") if isinstance(document, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        args = node.get("args") if isinstance(node.get("args"), dict) else {}
        if node.get("kind") == "slurm_job" or args.get("backend") == "slurm":
            return True
    return False


def add_compose_routes(app: FastAPI, repo: Callable[[], Any], cluster: Callable[[], dict[str, Any] | None]) -> None:
    """Add the compose API to ``app``.

    :param repo: returns the template repository.
    :param cluster: the default Slurm connection's status through the plugin's cached,
        single-flight monitor (``None`` when unavailable); used for the partition checks.
    """

    async def document_of(request: Request) -> Any:
        raw = await request.body()
        data = parse_json(raw)
        if not isinstance(data, dict) or "document" not in data or set(data) - {"document"}:
            raise HTTPException(422, "send {\"document\": {...}}: the workflow as the Compose page holds it")
        return data["document"]

    def check(document: Any) -> dict[str, Any]:
        from airflow_provider_hpcai.templates.compose_check import check_document

        status = cluster if _uses_slurm(document) else (lambda: None)
        return check_document(document, repo(), cluster=status)

    @app.get("/api/compose/palette", dependencies=[READ])
    def compose_palette() -> dict[str, Any]:
        from airflow_provider_hpcai.templates.compose_check import palette

        r = repo()
        return {"palette": palette(r), "can_publish_code": r.settings.stage_policy.job_scripts}

    @app.get("/api/compose/open/{name}", dependencies=[READ])
    def compose_open(name: str, version: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        from airflow_provider_hpcai.templates.compose import document_from_manifest, next_version

        r = repo()
        found = r.get(name, version)
        taken = [v["version"] for v in r.versions(name)]
        base = {"name": found.manifest.name, "version": found.manifest.version}
        return {
            "document": document_from_manifest(found.manifest.raw, base=base),
            "source": found.source,
            "checksum": found.checksum,
            "next_version": next_version(found.manifest.version, taken),
            "versions": taken,
        }

    @app.post("/api/compose/validate", dependencies=[READ])
    async def compose_validate(request: Request) -> dict[str, Any]:
        same_origin_write(request)
        document = await document_of(request)
        return await run_in_threadpool(check, document)

    @app.post("/api/compose/save", status_code=201)
    async def compose_save(request: Request, user: Any = ADMIN) -> Any:
        same_origin_write(request)
        document = await document_of(request)
        who = user_name(user)

        def work() -> Any:
            from airflow_provider_hpcai.templates.compose import manifest_from_document

            checked = check(document)
            if not checked["valid"]:
                return JSONResponse({"detail": "the workflow has problems; fix them first", **checked}, 422)
            r = repo()
            base = None
            if document.get("base"):
                base = r.get(document["base"]["name"], document["base"]["version"])
            sources = []
            if base is not None:
                sources.append({"name": base.manifest.name, "version": base.manifest.version, "sha256": base.checksum})
            for node in document["nodes"]:
                if node["kind"] == "template":
                    sub = r.get(node["args"]["name"], node["args"]["version"])
                    sources.append({"name": sub.manifest.name, "version": sub.manifest.version, "sha256": sub.checksum})
            composed = manifest_from_document(document, base=base, composed_by=who, sources=sources)
            if composed["unchanged"]:
                return JSONResponse({"unchanged": True, "name": base.manifest.name, "version": base.manifest.version,
                                     "manifest": composed["text"], "checksum": base.checksum}, 200)
            try:
                published = r.publish(composed["text"], publisher=who)
            except TemplateConflictError as err:
                from airflow_provider_hpcai.templates.compose import next_version

                name = composed["data"]["name"]
                try:
                    taken = [v["version"] for v in r.versions(name)]
                except Exception:
                    taken = []
                field = {"node": None, "field": "version", "severity": "error",
                         "message": f"{err} (next free version: {next_version(composed['data']['version'], taken)})"}
                return JSONResponse({"detail": str(err), "valid": False, "problems": [field]}, 409)
            if published.source != composed["text"]:  # an identical version was already there
                return JSONResponse({"unchanged": True, **published.to_dict(), "manifest": published.source}, 200)
            return {**published.to_dict(), "manifest": published.source, "unchanged": False,
                    "provenance": composed["data"].get("provenance")}

        return await run_in_threadpool(work)
