"""Errors raised by the workflow-template repository.

Each one subclasses the provider's :class:`~airflow_provider_hpcai.exceptions.HpcAiError`
and says what to do next. The plugin maps them to HTTP status codes through
:data:`HTTP_STATUS`.
"""

from __future__ import annotations

from airflow_provider_hpcai.exceptions import HpcAiError

__all__ = [
    "HTTP_STATUS",
    "InstanceNotFoundError",
    "RepositoryBusyError",
    "TemplateConflictError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateValidationError",
]


class TemplateError(HpcAiError):
    """Base class of every template-repository error."""


class TemplateValidationError(TemplateError, ValueError):
    """A manifest, a name, a version or a set of parameters is not acceptable.

    :param message: what is wrong and what is allowed.
    :param errors: one line per problem (e.g. each JSON Schema violation), for forms.
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class TemplateNotFoundError(TemplateError, LookupError):
    """No template (or no such version of it) is published."""


class TemplateConflictError(TemplateError):
    """The version is already published with different content; versions are immutable."""


class InstanceNotFoundError(TemplateError, LookupError):
    """No template instance has this id."""


class RepositoryBusyError(TemplateError):
    """Another process held the repository lock for too long; retry in a moment."""


#: HTTP status the plugin answers for each error class (first match in MRO order wins).
HTTP_STATUS: dict[type[TemplateError], int] = {
    TemplateValidationError: 422,
    TemplateNotFoundError: 404,
    InstanceNotFoundError: 404,
    TemplateConflictError: 409,
    RepositoryBusyError: 503,
}
