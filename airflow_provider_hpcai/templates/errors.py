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
    "InstanceQuotaError",
    "RepositoryBusyError",
    "TemplateConflictError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplatePermissionError",
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


class InstanceQuotaError(TemplateError):
    """A user holds, or just created, as many instances as ``[hpcai]`` allows.

    :param message: the limit, and what to do (delete instances, or wait).
    :param retry_after: seconds after which a retry can succeed, when waiting helps.
    """

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TemplatePermissionError(TemplateError, PermissionError):
    """The caller may not change this template or instance (it belongs to someone else)."""


class RepositoryBusyError(TemplateError):
    """Another process held the repository lock for too long; retry in a moment."""


#: HTTP status the plugin answers for each error class (first match in MRO order wins).
HTTP_STATUS: dict[type[TemplateError], int] = {
    TemplateValidationError: 422,
    TemplateNotFoundError: 404,
    InstanceNotFoundError: 404,
    TemplateConflictError: 409,
    InstanceQuotaError: 429,
    TemplatePermissionError: 403,
    RepositoryBusyError: 503,
}
