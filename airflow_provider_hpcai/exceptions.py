"""Exceptions raised by the provider.

Every exception subclasses :class:`HpcAiError`. Job outcomes (:class:`JobFailed` and its
subclasses) are raised for every backend (Slurm, Kubernetes, Grid Engine, local), so a DAG can
react to an out-of-memory kill the same way wherever the job ran. The ``Slurm*`` names of
earlier versions are the same classes under their old names (``SlurmOutOfMemory is
JobOutOfMemory``): ``except SlurmOutOfMemory`` keeps working for every backend.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "ControllerUnavailableError",
    "HpcAiError",
    "InvalidJobSpecError",
    "JobCancelled",
    "JobFailed",
    "JobNodeFailure",
    "JobNotFound",
    "JobOutOfMemory",
    "JobPreempted",
    "JobTimeout",
    "MissingExtraError",
    "SlurmJobCancelled",
    "SlurmJobFailed",
    "SlurmJobNotFound",
    "SlurmJobPreempted",
    "SlurmJobTimeout",
    "SlurmNodeFailure",
    "SlurmOutOfMemory",
    "TransportError",
]


class HpcAiError(Exception):
    """Base class of every error this provider raises."""


class InvalidJobSpecError(HpcAiError, ValueError):
    """A job specification (resources, script, names, parameters) is not acceptable.

    Raised before anything is submitted; the message says what is allowed.
    """


class ConfigurationError(HpcAiError):
    """A connection or the ``[hpcai]`` configuration is incomplete or inconsistent."""


class MissingExtraError(HpcAiError, ImportError):
    """An optional dependency is not installed; the message names the extra to install.

    An ``ImportError`` too, so code that falls back when a module is absent keeps doing so.
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class TransportError(HpcAiError):
    """A command or request to the scheduler failed.

    Keeps what is needed to debug it: the command (never a token), its exit code,
    stdout and stderr.
    """

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
        retryable: bool = False,
        credentials: bool = False,
    ) -> None:
        self.command = command
        #: The scheduler refused our credentials (an expired or rotated token): re-reading the
        #: connection may help, retrying with the same ones will not.
        self.credentials = credentials
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.retryable = retryable
        details = [message]
        if command:
            details.append(f"command: {command}")
        if returncode is not None:
            details.append(f"exit code: {returncode}")
        if stderr.strip():
            details.append(f"stderr: {stderr.strip()[-2000:]}")
        super().__init__("\n".join(details))


class ControllerUnavailableError(TransportError):
    """The scheduler could not be reached within the retry budget.

    The job itself may still be fine: check the cluster, then clear the task to reattach.
    """


class JobFailed(HpcAiError):
    """A job ended without success.

    :param job_id: the scheduler's job id.
    :param state: the final state as the scheduler reports it (e.g. ``FAILED``).
    :param exit_code: the job's exit code, when known.
    :param stderr_tail: the last lines of the job's error output.
    :param reason: a one-line explanation of what happened and what to do.
    """

    hint = "Read the job's output above; fix the script or its inputs and retry."

    def __init__(
        self,
        job_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        stderr_tail: str = "",
        reason: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = str(job_id)
        self.state = state
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.reason = reason or self.hint
        self.result = result or {}
        text = f"job {self.job_id} ended {state}"
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        text += f": {self.reason}"
        if stderr_tail.strip():
            text += "\n--- end of the job's error output ---\n" + stderr_tail.rstrip()
        super().__init__(text)

    def __reduce__(self):  # keep pickling (e.g. across processes) lossless
        return (
            _rebuild,
            (type(self), self.job_id, self.state, self.exit_code, self.stderr_tail, self.reason, self.result),
        )


def _rebuild(cls, job_id, state, exit_code, stderr_tail, reason, result):  # type: ignore[no-untyped-def]
    return cls(job_id, state, exit_code=exit_code, stderr_tail=stderr_tail, reason=reason, result=result)


class JobTimeout(JobFailed):
    """The job ran past its time limit and was killed."""

    hint = "It ran past its time limit: raise time_limit (the advisor escalates it on retry)."


class JobOutOfMemory(JobFailed):
    """The job used more memory than it asked for and was killed."""

    hint = "It used more memory than requested: raise memory (the advisor escalates it on retry)."


class JobNodeFailure(JobFailed):
    """A node under the job failed; the job itself may be fine, so a retry usually succeeds."""

    hint = "A node under the job failed; retrying (on other nodes) usually succeeds."


class JobPreempted(JobFailed):
    """A higher-priority job preempted this one."""

    hint = "It was preempted by higher-priority work; retry, or use a QOS that is not preemptible."


class JobCancelled(JobFailed):
    """The job was cancelled (by a user, an administrator or Airflow)."""

    hint = "It was cancelled (scancel, kubectl delete, qdel, an administrator, or Airflow marking the task)."


class JobNotFound(HpcAiError):
    """The scheduler knows no job with this id (wrong id, or purged from its records)."""


# The names of earlier versions: the same classes, so existing DAGs catch the same failures.
SlurmJobFailed = JobFailed
SlurmJobTimeout = JobTimeout
SlurmOutOfMemory = JobOutOfMemory
SlurmNodeFailure = JobNodeFailure
SlurmJobPreempted = JobPreempted
SlurmJobCancelled = JobCancelled
SlurmJobNotFound = JobNotFound
