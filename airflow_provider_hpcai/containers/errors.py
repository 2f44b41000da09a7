"""Errors of the container layer; each says what to do next."""

from __future__ import annotations

from airflow_provider_hpcai.exceptions import ConfigurationError

__all__ = ["ContainerImageNotFoundError", "ContainerRuntimeNotFoundError", "RuntimeNotOfferedError"]


class ContainerRuntimeNotFoundError(ConfigurationError):
    """No container runtime (podman, runc...) is installed where the stage should run."""


class ContainerImageNotFoundError(ConfigurationError):
    """The image (an OCI bundle folder) is not where the container says."""


class RuntimeNotOfferedError(ConfigurationError):
    """The container asks for a runtime that the connection's cluster does not offer."""
