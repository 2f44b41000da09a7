"""Slurm transports that act as one allowlisted user.

=========  ==================================================================================
local      ``sudo -n -u <user> -- sbatch ...`` (:class:`~.runners.SudoRunner`); output read as
           the user with ``dd``
ssh        the user's own SSH connection (``[hpcai] run_as_ssh_conn_id``, ``ssh_{user}``), whose
           login must be the user
rest       ``X-SLURM-USER-NAME: <user>`` with the connection's token (impersonation: the token
           must be SlurmUser's or root's), or the user's own token from the connection
           ``[hpcai] run_as_rest_token_conn_id``; output read as the user (over the user's SSH
           connection when the Slurm connection has ``log_ssh_conn_id``, else through sudo here)
=========  ==================================================================================

Every job folder is created by the user with mode 0700; every output read refuses files that
another user owns. Nothing here falls back to the service account: a missing connection, a
login that is not the user or a missing sudo rule is an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_hpcai.exceptions import ConfigurationError, TransportError
from airflow_provider_hpcai.identity.mapping import IdentitySettings, check_user, format_for_user
from airflow_provider_hpcai.identity.runners import SudoRunner, UserSshRunner
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, CommandRunner
from airflow_provider_hpcai.slurm.rest_transport import RestTransport

__all__ = ["UserCliTransport", "UserRestTransport", "build_user_transport"]


def _private_dir(runner: CommandRunner, path: str) -> None:
    runner.run(["mkdir", "-p", "-m", "700", "--", path]).check(f"creating {path}")


def _default_dir(settings: IdentitySettings, user: str, runner: CommandRunner) -> str:
    return settings.user_work_dir(user) or runner.home().rstrip("/") + "/.hpcai/jobs"


class UserCliTransport(CliTransport):
    """The CLI transport as ``user``: private job folders, the user's own default folder."""

    def __init__(self, runner: CommandRunner, *, user: str, settings: IdentitySettings, name: str) -> None:
        super().__init__(runner, name=name)
        self.user = user
        self.settings = settings

    def ensure_dir(self, path: str) -> None:
        _private_dir(self.runner, path)

    def default_workdir(self) -> str:
        return _default_dir(self.settings, self.user, self.runner)


class UserRestTransport(RestTransport):
    """slurmrestd on behalf of ``user`` (the ``X-SLURM-USER-NAME`` header names it); the file reader
    acts as the user too, and creates the job folder (slurmrestd has no file API)."""

    def __init__(self, *args: Any, settings: IdentitySettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return super()._request(method, path, **kwargs)
        except TransportError as err:
            if not err.credentials or self.settings.rest_token_conn_id:
                raise
            raise TransportError(
                f"{str(err).splitlines()[0]}; acting as {self.user!r} (X-SLURM-USER-NAME) needs the Slurm connection's "
                "token to be SlurmUser's or root's (scontrol token username=<SlurmUser>), and slurm.conf "
                "AuthAltTypes=auth/jwt; or set [hpcai] run_as_rest_token_conn_id for per-user tokens",
                command=err.command, returncode=err.returncode, retryable=err.retryable, credentials=True) from None

    def ensure_dir(self, path: str) -> None:
        _private_dir(self.file_reader, path)

    def default_workdir(self) -> str:
        return _default_dir(self.settings, self.user, self.file_reader)


def _user_ssh(settings: IdentitySettings, user: str, get_connection: Callable[[str], Any]) -> UserSshRunner:
    conn_id = format_for_user(settings.ssh_conn_id, user, "run_as_ssh_conn_id")
    try:
        conn = get_connection(conn_id)
    except Exception as err:
        raise ConfigurationError(
            f"no Airflow connection {conn_id!r} for Slurm user {user!r} ([hpcai] run_as_ssh_conn_id): add an SSH "
            "connection that logs in as that user") from err
    if (conn.login or "") != user:
        raise ConfigurationError(
            f"SSH connection {conn_id!r} logs in as {conn.login!r}, not {user!r}: jobs of {user!r} must run under "
            "that user's own login")
    return UserSshRunner(conn_id, user)


def _user_token(settings: IdentitySettings, user: str, get_connection: Callable[[str], Any]) -> Callable[[], str]:
    conn_id = format_for_user(settings.rest_token_conn_id, user, "run_as_rest_token_conn_id")
    try:
        conn = get_connection(conn_id)
    except Exception as err:
        raise ConfigurationError(
            f"no Airflow connection {conn_id!r} holding the JWT of Slurm user {user!r} "
            "([hpcai] run_as_rest_token_conn_id)") from err
    if conn.login and conn.login != user:
        raise ConfigurationError(f"token connection {conn_id!r} is for {conn.login!r}, not {user!r}")
    if not conn.password:
        raise ConfigurationError(f"token connection {conn_id!r} has no password (the user's JWT)")
    token = str(conn.password)
    return lambda: token


def build_user_transport(extras: dict[str, Any], *, kind: str, user: str, settings: IdentitySettings,
                         service_token: Callable[[], str] | None, get_connection: Callable[[str], Any],
                         verify: bool | str = True) -> CliTransport | RestTransport:
    """The transport of a Slurm connection (``extras``, already checked) acting as ``user``.

    :param kind: ``local``, ``ssh`` or ``rest``.
    :param service_token: the Slurm connection's own token (rest impersonation).
    :param get_connection: reads an Airflow connection by id (the hook's).
    :raises RunAsRefusedError: the user is not (or no longer) allowed.
    :raises ConfigurationError: a per-user connection is missing or logs in as someone else.
    """
    check_user(user, settings)
    if kind == "local":
        return UserCliTransport(SudoRunner(user, sudo=settings.sudo), user=user, settings=settings, name="local")
    if kind == "ssh":
        return UserCliTransport(_user_ssh(settings, user, get_connection), user=user, settings=settings, name="ssh")
    if kind != "rest":
        raise ConfigurationError(f"unknown slurm transport {kind!r}: use 'rest', 'ssh' or 'local'")
    if settings.rest_token_conn_id:
        token = _user_token(settings, user, get_connection)
    elif service_token is not None:
        token = service_token  # impersonation: SlurmUser's (or root's) token, the header names the user
    else:
        raise ConfigurationError("a rest slurm connection needs the JWT as password or an extra 'token_file'")
    reader: CommandRunner = (_user_ssh(settings, user, get_connection) if extras.get("log_ssh_conn_id")
                             else SudoRunner(user, sudo=settings.sudo))
    return UserRestTransport(extras["base_url"], user, token, api_version=extras.get("api_version") or "auto",
                             file_reader=reader, verify=verify, settings=settings,
                             job_path=extras.get("job_path"))
