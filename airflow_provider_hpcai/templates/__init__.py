"""Workflow templates: a repository of parameterised DAG blueprints and their instances.

Importing this package is cheap; heavy parts (Airflow operators, jsonschema) load when used.

* :mod:`.manifest` - ``template.yaml`` parsing and parameter validation;
* :mod:`.repository` - publish / get / search / deprecate / instantiate (local folder);
* :mod:`.git_backend` - the same, with each change committed to git;
* :mod:`.stages` - building a DAG from a manifest and an instance;
* :mod:`.loader` - the loader DAG file's body;
* :mod:`.cli` - ``hpcai templates ...``.
"""

from __future__ import annotations

from airflow_provider_hpcai.templates.configured import open_repository
from airflow_provider_hpcai.templates.errors import (
    InstanceNotFoundError,
    RepositoryBusyError,
    TemplateConflictError,
    TemplateError,
    TemplateNotFoundError,
    TemplateValidationError,
)
from airflow_provider_hpcai.templates.repository import TemplateRepository, TemplateVersion

__all__ = [
    "InstanceNotFoundError",
    "RepositoryBusyError",
    "TemplateConflictError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateRepository",
    "TemplateValidationError",
    "TemplateVersion",
    "open_repository",
]
