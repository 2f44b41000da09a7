"""Extra links from a task instance to its job: a Slurm web dashboard, a Kubernetes console.

Each link is a URL template in the extras of the task's connection, ``job_url_template``::

    {"transport": "rest", ..., "job_url_template":
        "https://ondemand.example/pun/sys/dashboard/activejobs?jobid={job_id}&cluster={cluster}"}

In Airflow 3 the worker computes every extra link when the task finishes (success or failure)
and stores it in XCom; the UI only reads it back. :meth:`get_link` therefore runs next to the
operator: it reads the job id from the ``job_id`` XCom the job operators push when they submit
(or adopt) a job, and the template from the connection. No template, no job id, or a backend the
link is not for: an empty link (the UI shows it disabled).

Templates are validated (``http``/``https`` only, known placeholders only) and every substituted
value is URL-quoted, so a job id or namespace can never change the URL's scheme, host or path.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from airflow_provider_hpcai.exceptions import ConfigurationError

__all__ = ["JOB_URL_EXTRA", "KubernetesJobLink", "SlurmJobLink", "render_job_url"]

log = logging.getLogger(__name__)

#: The connection extra holding the URL template.
JOB_URL_EXTRA = "job_url_template"
_SCHEMES = ("http", "https")


def render_job_url(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template``'s ``{placeholders}`` with URL-quoted ``values`` (pure).

    :param template: an ``http(s)://`` URL with ``{name}`` placeholders, e.g.
        ``https://ood.example/activejobs?jobid={job_id}&cluster={cluster}``.
    :param values: the placeholders' values (``None`` becomes an empty string).
    :raises ConfigurationError: for a scheme other than http/https, a URL without a host, an
        unknown placeholder, or a malformed template (say which, and what is allowed).
    """
    if not isinstance(template, str) or not template.strip():
        raise ConfigurationError(f"{JOB_URL_EXTRA} must be a non-empty URL template")
    template = template.strip()
    head = urlsplit(template.split("{", 1)[0])
    if head.scheme.lower() not in _SCHEMES or not head.netloc:
        raise ConfigurationError(
            f"{JOB_URL_EXTRA} {template!r} must start with http:// or https:// and a host "
            "(the host may not be a placeholder)"
        )
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as err:
        raise ConfigurationError(f"{JOB_URL_EXTRA} {template!r} is malformed: {err}") from err
    unknown = sorted({f for f in fields if f not in values})
    if unknown:
        raise ConfigurationError(
            f"{JOB_URL_EXTRA} {template!r} uses unknown placeholders {unknown}; known: {sorted(values)}"
        )
    quoted = {k: quote("" if v is None else str(v), safe="") for k, v in values.items()}
    url = template.format_map(quoted)
    if urlsplit(url).scheme.lower() not in _SCHEMES:  # belt and braces: quoting keeps the scheme
        raise ConfigurationError(f"{JOB_URL_EXTRA} produced a non-http(s) URL")
    return url


def _xcom_job_id(ti_key: Any) -> str | None:
    from airflow.sdk.execution_time.xcom import XCom  # the deployment's XCom backend

    value = XCom.get_value(ti_key=ti_key, key="job_id")
    return None if value in (None, "") else str(value)


def _connection_extras(conn_id: str | None) -> tuple[dict[str, Any], Any]:
    if not conn_id:
        return {}, None
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return dict(conn.extra_dejson or {}), conn


class _JobLink(BaseOperatorLink):
    """A link to the task's job, from a URL template in its connection's extras."""

    #: The backend (``operator.backend``) this link is for.
    backend: ClassVar[str] = ""

    def values(self, operator: Any, job_id: str, extras: Mapping[str, Any], conn: Any) -> dict[str, Any]:
        """The placeholders this link offers."""
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if getattr(operator, "backend", None) != self.backend:
            return ""
        job_id = _xcom_job_id(ti_key)
        if job_id is None:
            return ""
        extras, conn = _connection_extras(getattr(operator, "conn_id", None))
        template = extras.get(JOB_URL_EXTRA)
        if not template:
            return ""
        try:
            return render_job_url(template, self.values(operator, job_id, extras, conn))
        except ConfigurationError as err:  # say what is wrong in the task log; the link stays disabled
            log.warning("No %r link for job %s: %s (connection %r)", self.name, job_id, err,
                        getattr(operator, "conn_id", None))
            return ""


class SlurmJobLink(_JobLink):
    """"Slurm job": e.g. Open OnDemand's active jobs page or a Slurm web dashboard.

    Placeholders: ``{job_id}``, ``{cluster}`` (the connection's extra ``cluster``, else its host),
    ``{user}`` (the connection's login).
    """

    name = "Slurm job"
    backend: ClassVar[str] = "slurm"

    def values(self, operator: Any, job_id: str, extras: Mapping[str, Any], conn: Any) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "cluster": extras.get("cluster") or getattr(conn, "host", None) or "",
            "user": getattr(conn, "login", None) or "",
        }


class KubernetesJobLink(_JobLink):
    """"Kubernetes job": the Job (or MPIJob) in a console (Headlamp, OpenShift, a cloud console...).

    The template is the ``job_url_template`` extra of the task's cncf ``kubernetes`` connection.
    Placeholders: ``{job_name}`` (also ``{job_id}``), ``{namespace}``, ``{kind}`` (``Job`` or
    ``MPIJob``), ``{cluster}`` (the connection's extra ``cluster``).
    """

    name = "Kubernetes job"
    backend: ClassVar[str] = "kubernetes"

    def values(self, operator: Any, job_id: str, extras: Mapping[str, Any], conn: Any) -> dict[str, Any]:
        ref = getattr(operator, "job_ref", None)
        where = dict(getattr(ref, "extra", None) or {})
        namespace = where.get("namespace") or getattr(operator, "namespace", None) or extras.get("namespace")
        return {
            "job_id": job_id,
            "job_name": job_id,
            "namespace": namespace or "default",
            "kind": where.get("kind") or "Job",
            "cluster": extras.get("cluster") or "",
        }
