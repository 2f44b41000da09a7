"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.config import CONFIG_OPTIONS


def _conn_field(label: str, kind: str | list[str], description: str, default: Any = None, enum: list[str] | None = None):
    schema: dict[str, Any] = {"type": [kind, "null"] if isinstance(kind, str) else kind + ["null"]}
    if default is not None:
        schema["default"] = default
    if enum:
        schema["enum"] = enum
    return {"label": label, "schema": schema, "description": description}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against its provider-info schema."""
    from airflow_provider_hpcai import __version__
    from airflow_provider_hpcai.dask.provider_info import dask_connection_type

    return {
        "package-name": "airflow-provider-hpcai",
        "name": "HPC-AI",
        "description": "Slurm, Kubernetes and local MPI/GPU simulation stages, a resource advisor and workflow templates.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Slurm",
                "external-doc-url": "https://slurm.schedmd.com/",
                "tags": ["compute"],
                "python-modules": ["airflow_provider_hpcai.operators.slurm"],
            },
            {
                "integration-name": "Dask",
                "external-doc-url": "https://distributed.dask.org/",
                "tags": ["compute"],
                "python-modules": ["airflow_provider_hpcai.operators.dask"],
            },
            {
                "integration-name": "Kubernetes HPC",
                "external-doc-url": "https://kubernetes.io/",
                "tags": ["compute"],
                "python-modules": ["airflow_provider_hpcai.operators.kubernetes"],
            },
        ],
        "operators": [
            {
                "integration-name": "Slurm",
                "python-modules": [
                    "airflow_provider_hpcai.operators.slurm",
                    "airflow_provider_hpcai.operators.simulation",
                ],
            },
            {"integration-name": "Dask", "python-modules": ["airflow_provider_hpcai.operators.dask"]},
            {"integration-name": "Kubernetes HPC", "python-modules": ["airflow_provider_hpcai.operators.kubernetes"]},
        ],
        "sensors": [{"integration-name": "Slurm", "python-modules": ["airflow_provider_hpcai.sensors.slurm"]}],
        "task-decorators": [{"name": "dask", "class-name": "airflow_provider_hpcai.operators.dask.dask_task"}],
        "extra-links": [
            "airflow_provider_hpcai.operators.links.SlurmJobLink",
            "airflow_provider_hpcai.operators.links.KubernetesJobLink",
            "airflow_provider_hpcai.dask.links.DaskDashboardLink",
        ],
        "hooks": [
            {"integration-name": "Slurm", "python-modules": ["airflow_provider_hpcai.hooks.slurm"]},
            {"integration-name": "Dask", "python-modules": ["airflow_provider_hpcai.hooks.dask"]},
        ],
        "triggers": [
            {"integration-name": "Slurm", "python-modules": ["airflow_provider_hpcai.triggers.job",
                                                             "airflow_provider_hpcai.triggers.slurm"]},
            {"integration-name": "Kubernetes HPC", "python-modules": ["airflow_provider_hpcai.triggers.kubernetes"]},
        ],
        "connection-types": [
            {
                "connection-type": "slurm",
                "hook-class-name": "airflow_provider_hpcai.hooks.slurm.SlurmHook",
                "hook-name": "Slurm",
                "conn-fields": {
                    "transport": _conn_field(
                        "Transport", "string", "rest (slurmrestd), ssh (CLI over SSH) or local (CLI here)",
                        default="local", enum=["rest", "ssh", "local"],
                    ),
                    "base_url": _conn_field("slurmrestd URL", "string", "rest: e.g. http://slurm-head:6820"),
                    "api_version": _conn_field(
                        "REST API version", "string", "rest: auto, v0.0.38, v0.0.40, v0.0.41 or v0.0.42", default="auto"
                    ),
                    "token_file": _conn_field(
                        "Token file", "string", "rest: a file holding the JWT (re-read on each call); else the password"
                    ),
                    "ssh_conn_id": _conn_field("SSH connection", "string", "ssh: the Airflow SSH connection to use"),
                    "log_ssh_conn_id": _conn_field(
                        "SSH connection for job output", "string", "rest: read job output over this SSH connection"
                    ),
                    "work_dir": _conn_field("Working directory", "string", "where jobs run and write output"),
                    "partition": _conn_field("Default partition", "string", "used when a task names none"),
                    "verify": _conn_field(
                        "Verify TLS", "string",
                        "rest over https: true (default), false, or the path of a CA bundle on the workers "
                        "and triggerer", default="true",
                    ),
                    "job_url_template": _conn_field(
                        "Job link URL", "string",
                        "the task's 'Slurm job' link: an http(s) URL with {job_id}, {cluster}, {user}, e.g. "
                        "https://ondemand.example/pun/sys/dashboard/activejobs?jobid={job_id}&cluster={cluster}",
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "Slurm user (rest)", "password": "JWT token (rest)", "host": "Cluster name"},
                    "placeholders": {"host": "my-cluster"},
                },
            },
            dask_connection_type(),
        ],
        "config": {
            "hpcai": {
                "description": "Settings of the airflow-provider-hpcai provider.",
                "options": CONFIG_OPTIONS,
            }
        },
    }
