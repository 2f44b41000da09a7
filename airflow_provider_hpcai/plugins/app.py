"""The plugin's FastAPI app: template gallery, instantiation, cluster status, advisor.

Built by :func:`create_app` and mounted by Airflow's API server under ``/hpcai``. Every
route, pages and static files included, requires an authenticated Airflow user with the
permission listed in :mod:`.auth`. Bodies are parsed only after authentication, so a
caller without credentials learns nothing beyond 401/403.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request, status
from fastapi import Path as Path_
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from airflow_provider_hpcai.plugins import URL_PREFIX
from airflow_provider_hpcai.plugins.auth import (
    ADMIN,
    CREATE,
    DELETE,
    READ,
    check_dag_read,
    manages_all,
    same_origin_write,
    user_name,
)
from airflow_provider_hpcai.plugins.cluster_access import ConnectionAllowList
from airflow_provider_hpcai.plugins.compose_routes import add_compose_routes
from airflow_provider_hpcai.plugins.limits import MAX_BODY_BYTES, RequestLimits, parse_json
from airflow_provider_hpcai.plugins.monitor import ClusterMonitor, ServiceUnavailable
from airflow_provider_hpcai.plugins.services import default_advisor, default_usage_history
from airflow_provider_hpcai.templates.errors import HTTP_STATUS, TemplateError
from airflow_provider_hpcai.templates.visibility import MAX_USAGE_ROWS, own_usage, visible_instances

__all__ = ["MAX_BODY_BYTES", "URL_PREFIX", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_RUN_ID = r"^[A-Za-z0-9_.:+~-]{1,250}$"  # Rust regex: $ is the very end
_DAG_ID = r"^[A-Za-z0-9_.-]{1,250}$"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateBody(_Body):
    manifest: str | None = None
    template: str | None = None
    version: str | None = None
    params: dict[str, Any] | None = None


class InstantiateBody(_Body):
    version: str | None = None
    params: dict[str, Any] = {}
    resources: dict[str, Any] | None = None


class PublishBody(_Body):
    manifest: str


class DeprecateBody(_Body):
    reason: str = ""


class AdviceBody(_Body):
    template: str
    version: str | None = None
    params: dict[str, Any] = {}
    resources: dict[str, Any] | None = None


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()  # RequestLimits stops reading past MAX_BODY_BYTES (413)
    try:
        return model.model_validate(parse_json(raw))
    except ValidationError as err:
        errors = [{"path": "/".join(map(str, e["loc"])), "message": e["msg"]} for e in err.errors()]
        raise HTTPException(422, {"message": "bad request body", "errors": errors}) from None


def _page(request: Request, name: str, url_prefix: str) -> HTMLResponse:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    airflow_base = root[: -len(url_prefix)] if url_prefix and root.endswith(url_prefix) else ""
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    text = text.replace("__BASE__", html.escape(root, quote=True)).replace(
        "__AIRFLOW_BASE__", html.escape(airflow_base, quote=True)
    )
    return HTMLResponse(text, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})


def create_app(
    *,
    repository: Callable[[], Any] | None = None,
    cluster_status: Callable[[str | None], dict[str, Any]] | None = None,
    advisor: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None,
    usage_history: Callable[[int], list[dict[str, Any]]] | None = None,
    url_prefix: str = URL_PREFIX,
    cluster_ttl: float = 10.0,
    cluster_conn_ids: list[str] | None = None,
) -> FastAPI:
    """Build the plugin app.

    :param repository: returns the template repository (default: the configured one, opened
        per request so configuration changes apply).
    :param cluster_status: ``f(conn_id) -> status`` (default: the Slurm hook's ``cluster_status()``).
    :param advisor: ``f(key, requested) -> {"resources": ...}`` (default: the provider's advisor).
    :param usage_history: ``f(limit) -> [job rows]`` (default: the advisor's job history).
    :param url_prefix: where Airflow mounts the app (used to link back to Airflow pages).
    :param cluster_ttl: seconds a cluster status answer is reused.
    :param cluster_conn_ids: the connections ``/api/cluster`` may use (default: ``[hpcai]
        cluster_status_conn_ids``, see :mod:`.cluster_access`).
    """
    if repository is None:
        from airflow_provider_hpcai.templates.configured import open_repository

        repository = open_repository
    monitor = ClusterMonitor(cluster_status, ttl=cluster_ttl) if cluster_status else ClusterMonitor(ttl=cluster_ttl)
    access = ConnectionAllowList(cluster_conn_ids)
    advise = advisor or default_advisor
    history = usage_history or default_usage_history

    app = FastAPI(title="HPC-AI workflow templates", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestLimits)
    app.state.monitor = monitor

    @app.exception_handler(TemplateError)
    async def _template_error(request: Request, err: TemplateError) -> JSONResponse:
        code = next((HTTP_STATUS[c] for c in type(err).__mro__ if c in HTTP_STATUS), 400)
        retry = getattr(err, "retry_after", None)
        headers = {"Retry-After": str(retry)} if retry else None
        return JSONResponse({"detail": str(err), "errors": getattr(err, "errors", [])}, status_code=code, headers=headers)

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(request: Request, err: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503)

    def repo() -> Any:
        return repository()

    # ---------------------------------------------------------------- pages
    @app.get("/", dependencies=[READ], include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.scope.get("root_path", "")).rstrip("/") + "/templates")

    @app.get("/templates", dependencies=[READ], response_class=HTMLResponse)
    def templates_page(request: Request) -> HTMLResponse:
        return _page(request, "templates.html", url_prefix)

    @app.get("/resources", dependencies=[READ], response_class=HTMLResponse)
    def resources_page(request: Request) -> HTMLResponse:
        return _page(request, "resources.html", url_prefix)

    @app.get("/compose", dependencies=[READ], response_class=HTMLResponse)
    def compose_page(request: Request) -> HTMLResponse:
        return _page(request, "compose.html", url_prefix)

    @app.get("/monitor", dependencies=[READ], response_class=HTMLResponse)
    def monitor_page(request: Request) -> HTMLResponse:
        return _page(request, "monitor.html", url_prefix)

    @app.get("/static/{name}", dependencies=[READ])
    def static(name: str) -> Response:
        path = STATIC_DIR / name
        kind = _STATIC_TYPES.get(path.suffix)
        if kind is None or "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        return Response(path.read_bytes(), media_type=kind, headers={"Cache-Control": "no-cache"})

    # ---------------------------------------------------------------- repository
    @app.get("/api/templates", dependencies=[READ])
    def list_templates(
        q: str | None = Query(None, max_length=200),
        domain: str | None = Query(None, max_length=64),
        tag: str | None = Query(None, max_length=64),
    ) -> dict[str, Any]:
        r = repo()
        items = r.search(q, domain=domain, tag=tag) if (q or domain or tag) else r.list_templates()
        return {"templates": items, "total": len(items)}

    @app.get("/api/templates/{name}", dependencies=[READ])
    def get_template(name: str, version: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        r = repo()
        found = r.get(name, version)
        return {**found.to_dict(with_source=True), "versions": r.versions(name)}

    @app.get("/api/templates/{name}/versions", dependencies=[READ])
    def template_versions(name: str) -> dict[str, Any]:
        return {"versions": repo().versions(name)}

    @app.post("/api/validate", dependencies=[READ])
    async def validate(request: Request) -> dict[str, Any]:
        same_origin_write(request)  # no cross-site text/plain form: a body of work for the server
        body: ValidateBody = await _body(request, ValidateBody)
        r = repo()
        if body.manifest is not None:
            manifest = await run_in_threadpool(r.validate_manifest, body.manifest)
            return {"valid": True, "template": manifest.summary()}
        if not body.template:
            raise HTTPException(422, "give 'manifest', or 'template' and 'params'")
        params = await run_in_threadpool(r.validate_params, body.template, body.version, body.params)
        return {"valid": True, "params": params}

    @app.post("/api/templates/{name}/instantiate", status_code=201)
    async def instantiate(name: str, request: Request, user: Any = CREATE) -> dict[str, Any]:
        same_origin_write(request)
        body: InstantiateBody = await _body(request, InstantiateBody)
        record = await run_in_threadpool(
            lambda: repo().instantiate(name, body.version, body.params, user_name(user), resources=body.resources)
        )
        root = str(request.scope.get("root_path", "")).rstrip("/")
        base = root[: -len(url_prefix)] if url_prefix and root.endswith(url_prefix) else ""
        return {**record, "dag_url": f"{base}/dags/{record['dag_id']}"}

    @app.post("/api/templates", status_code=201)
    async def publish(request: Request, user: Any = ADMIN) -> dict[str, Any]:
        same_origin_write(request)
        body: PublishBody = await _body(request, PublishBody)
        version = await run_in_threadpool(lambda: repo().publish(body.manifest, publisher=user_name(user)))
        return version.to_dict()

    @app.post("/api/templates/{name}/{version}/deprecate")
    async def deprecate(name: str, version: str, request: Request, user: Any = ADMIN) -> dict[str, Any]:
        same_origin_write(request)
        body: DeprecateBody = await _body(request, DeprecateBody)
        found = await run_in_threadpool(lambda: repo().deprecate(name, version, reason=body.reason, by=user_name(user)))
        return found.to_dict()

    # ---------------------------------------------------------------- instances
    @app.get("/api/instances")
    def list_instances(template: str | None = Query(None, max_length=64), user: Any = READ) -> dict[str, Any]:
        items = visible_instances(repo().list_instances(template), user_name(user), manages_all(user))
        return {"instances": items, "total": len(items)}

    @app.delete("/api/instances/{instance_id}")
    def delete_instance(instance_id: str, request: Request, user: Any = DELETE) -> dict[str, Any]:
        same_origin_write(request)
        requester = None if manages_all(user) else user_name(user)
        return repo().delete_instance(instance_id, requester=requester)

    # ---------------------------------------------------------------- compose and run monitor
    def default_cluster() -> dict[str, Any] | None:
        try:
            return monitor.status(access.resolve(None))
        except Exception:
            return None

    add_compose_routes(app, repo, default_cluster)

    def live_jobs() -> list[dict[str, Any]]:
        """Jobs the allow-listed Slurm connections know now (at most 4; cached, single flight each)."""
        jobs: list[dict[str, Any]] = []
        for conn in (access.listed() or [access.resolve(None)])[:4]:
            try:
                jobs += list(monitor.status(conn).get("jobs") or [])
            except Exception:  # noqa: S112 - a connection that does not answer shows no live jobs
                continue
        return jobs

    def run_result(dag_id: str, run_id: str) -> dict[str, Any]:
        from airflow_provider_hpcai.plugins.run_monitor import run_view

        found = run_view(dag_id, run_id, live_jobs=live_jobs)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id!r} of DAG {dag_id!r}")
        return found

    @app.get("/api/runs/{dag_id}/{run_id}")
    async def run_monitor(
        dag_id: str = Path_(..., pattern=_DAG_ID), run_id: str = Path_(..., pattern=_RUN_ID), user: Any = READ
    ) -> dict[str, Any]:
        check_dag_read(user, dag_id)
        return await run_in_threadpool(run_result, dag_id, run_id)

    @app.get("/api/runs/{dag_id}/{run_id}/outputs/{task_id}/{index}")
    def run_output(
        dag_id: str = Path_(..., pattern=_DAG_ID),
        run_id: str = Path_(..., pattern=_RUN_ID),
        task_id: str = Path_(..., pattern=_DAG_ID),
        index: int = Path_(..., ge=0, le=100),
        map_index: int = Query(-1, ge=-1, le=100000),
        user: Any = READ,
    ) -> Response:
        from airflow_provider_hpcai.plugins.run_monitor import output_file, read_run

        check_dag_read(user, dag_id)
        run = read_run(dag_id, run_id)
        result = (run or {}).get("results", {}).get((task_id, map_index))
        try:
            data, kind = output_file(result, index)
        except LookupError as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; sandbox"}
        return Response(data, media_type=kind, headers=headers)

    # ---------------------------------------------------------------- HPC resources and advisor
    @app.get("/api/cluster", dependencies=[READ])
    async def cluster(conn_id: str | None = Query(None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")) -> dict[str, Any]:  # Rust regex: $ is the very end
        resolved = await run_in_threadpool(access.resolve, conn_id)  # may look the connection up
        return await monitor.status_async(resolved)  # waits at most monitor.wait_s, holding no thread

    @app.get("/api/usage")
    def usage(limit: int = Query(200, ge=1, le=5000), user: Any = READ) -> dict[str, Any]:
        if manages_all(user):
            return {"jobs": history(limit)}
        return {"jobs": own_usage(history(MAX_USAGE_ROWS), user_name(user))[-limit:]}

    @app.post("/api/advice")
    async def advice(request: Request, user: Any = READ) -> dict[str, Any]:
        same_origin_write(request)
        body: AdviceBody = await _body(request, AdviceBody)

        def work() -> dict[str, Any]:
            from airflow_provider_hpcai.templates.stages import instance_resources

            found = repo().get(body.template, body.version)
            params = repo().validate_params(body.template, found.manifest.version, body.params)
            requested = instance_resources(found.manifest, body.resources).to_dict()
            key = {
                "template": found.manifest.name,
                "version": found.manifest.version,
                "owner": user_name(user),
                "params": params,
                "size_params": {
                    k: v for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
            }
            return {"requested": requested, "advice": advise(key, requested)}

        return await run_in_threadpool(work)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException) -> Response:
        accepts_html = "text/html" in request.headers.get("accept", "")
        if err.status_code in (401, 403) and accepts_html and "/api/" not in request.url.path:
            return HTMLResponse(_login_page(err), status_code=err.status_code, headers={"Cache-Control": "no-store"})
        detail = err.detail
        if isinstance(detail, dict):
            return JSONResponse({"detail": detail.get("message"), "errors": detail.get("errors", [])}, err.status_code)
        return JSONResponse({"detail": detail}, status_code=err.status_code, headers=getattr(err, "headers", None))

    return app


def _login_page(err: HTTPException) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login()
    except Exception:
        login = "/auth/login"
    message = "Log in to Airflow to see this page." if err.status_code == 401 else "Your Airflow role cannot see this page."
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>HPC-AI</title></head><body>"
        f"<p>{html.escape(message)}</p><p><a href='{html.escape(login, quote=True)}' target='_top'>Log in</a></p>"
        "</body></html>"
    )
