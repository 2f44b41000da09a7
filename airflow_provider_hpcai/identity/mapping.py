"""Which Slurm user a job runs as: the allowlist and the owner mapping, as pure data and rules.

Configuration, not code (``[hpcai]`` section, read in :mod:`airflow_provider_hpcai.config`)::

    run_as_users   = hpc-alice,hpc-bob          # the allowlist; empty: the feature is off
    run_as_mapping = alice=hpc-alice,genomics=hpc-bob
    run_as_unmapped = refuse                    # or: service

:func:`resolve` turns a task's ``owner`` and ``run_as`` into one allowlisted Slurm user, ``None``
(run as the connection's own account: the feature is off, or ``run_as_unmapped = service``), or a
:class:`RunAsRefusedError` that says what to change. It is called before anything reaches the
cluster, and :func:`check_user` again whenever a transport is built for a user (workers,
triggerer, reattach, cancel), so a user taken off the allowlist stops being impersonated at once.
"""

from __future__ import annotations

import dataclasses
import pwd
import re
from collections.abc import Callable, Mapping
from typing import Literal

from airflow_provider_hpcai.exceptions import ConfigurationError

__all__ = [
    "IdentitySettings",
    "RunAsRefusedError",
    "check_key",
    "check_user",
    "check_user_name",
    "format_for_user",
    "local_uid",
    "parse_mapping",
    "resolve",
]

#: A Slurm/POSIX user name: a letter or ``_`` first, then letters, digits, ``_``, ``.``, ``-``;
#: at most 32 characters. No ``/``, ``..`` start, ``;``, spaces, ``$`` or non-ASCII letters.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
#: Keys of the mapping (owners, run_as names): printable, no separators of the option's syntax.
_KEY = re.compile(r"[^\s,=]{1,128}")
#: Never a job's user, in any letter case: root, and sudoers' ``ALL`` (a Runas wildcard in a rule).
_ALWAYS_REFUSED = frozenset({"root", "all"})
_MAX_SHOWN = 48


class RunAsRefusedError(ConfigurationError):
    """A job may not run as the user it asks for (root, not allowlisted, malformed, unmapped).

    Raised before anything is sent to the cluster; the message says which option to change.
    """


def _shown(value: object) -> str:
    """``value`` for an error message: repr'd (control characters escaped) and cut short."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...'"


def local_uid(name: str) -> int | None:
    """The uid of ``name`` on this host, or ``None`` where this host does not know the user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError, OSError):
        return None


def check_user_name(name: object, what: str = "run_as") -> str:
    """``name`` when it is a well-formed user name that is not root.

    :raises RunAsRefusedError: for anything else (wrong type, empty, too long, shell or path
        characters, non-ASCII, ``root``).
    """
    if not isinstance(name, str):
        raise RunAsRefusedError(f"{what} must be a user name (text), not {type(name).__name__}")
    if not _USER_NAME.fullmatch(name):
        raise RunAsRefusedError(
            f"{what} {_shown(name)} is not a valid user name: a letter or '_' first, then letters, digits, "
            "'_', '.' or '-', at most 32 characters")
    if name.lower() in _ALWAYS_REFUSED:
        raise RunAsRefusedError(f"{what} {name!r}: jobs never run as root (or a name sudo reads as every user), "
                                "whatever the configuration says")
    return name


def check_key(value: object, what: str = "run_as") -> str:
    """``value`` when it can be a key of the mapping or a user name (checked at DAG parse time).

    :raises RunAsRefusedError: not text, empty, over 128 characters, whitespace, ``,`` or ``=``
        in it, or ``root``.
    """
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise RunAsRefusedError(f"{what} {_shown(value)} must be a user or mapping key: 1 to 128 characters, "
                                "no whitespace, ',' or '='")
    if value.lower() in _ALWAYS_REFUSED:
        raise RunAsRefusedError(f"{what} {value!r}: jobs never run as root, whatever the configuration says")
    return value


def parse_users(text: str | None) -> frozenset[str]:
    """The allowlist ``run_as_users`` (comma-separated names).

    :raises ConfigurationError: an entry that is malformed or root.
    """
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    try:
        return frozenset(check_user_name(name, "[hpcai] run_as_users entry") for name in names)
    except RunAsRefusedError as err:
        raise ConfigurationError(str(err)) from None


def parse_mapping(text: str | None) -> dict[str, str]:
    """``run_as_mapping`` (``key=user`` pairs, comma-separated) as a dict.

    :raises ConfigurationError: a pair without ``=``, a malformed key or user, a key given twice.
    """
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, user = (p.strip() for p in part.partition("="))
        if not sep or not _KEY.fullmatch(key):
            raise ConfigurationError(f"[hpcai] run_as_mapping entry {_shown(part)} is not key=user")
        if key in mapping:
            raise ConfigurationError(f"[hpcai] run_as_mapping names {key!r} twice")
        try:
            mapping[key] = check_user_name(user, f"[hpcai] run_as_mapping user of {key!r}")
        except RunAsRefusedError as err:
            raise ConfigurationError(str(err)) from None
    return mapping


def format_for_user(pattern: str, user: str, what: str) -> str:
    """``pattern`` with ``{user}`` replaced (the user was checked by :func:`check_user_name`).

    :raises ConfigurationError: a pattern without ``{user}`` (every user would share one value)
        or with other fields.
    """
    if "{user}" not in pattern:
        raise ConfigurationError(f"[hpcai] {what} = {pattern!r} must contain {{user}}: one value per user")
    rest = pattern.replace("{user}", "")
    if "{" in rest or "}" in rest:
        raise ConfigurationError(f"[hpcai] {what} = {pattern!r}: only {{user}} may be replaced")
    return pattern.replace("{user}", user)


@dataclasses.dataclass(frozen=True)
class IdentitySettings:
    """The ``run_as_*`` options, parsed and checked.

    :param users: the allowlist (empty: jobs run as the connection's account).
    :param mapping: owner or run_as key -> Slurm user.
    :param unmapped: what an owner that maps to nobody does: ``refuse`` or ``service``.
    :param ssh_conn_id: per-user SSH connection id pattern (``{user}``).
    :param rest_token_conn_id: per-user JWT connection id pattern (empty: impersonation).
    :param sudo: the sudo program of the local transport.
    :param work_dir: per-user working directory pattern (empty: ``~user/.hpcai/jobs``).
    """

    users: frozenset[str] = frozenset()
    mapping: Mapping[str, str] = dataclasses.field(default_factory=dict)
    unmapped: Literal["refuse", "service"] = "refuse"
    ssh_conn_id: str = "ssh_{user}"
    rest_token_conn_id: str = ""
    sudo: str = "sudo"
    work_dir: str = ""

    @property
    def enabled(self) -> bool:
        """Whether jobs may run as users other than the connection's."""
        return bool(self.users)

    @classmethod
    def parse(cls, *, users: str | None = None, mapping: str | None = None, unmapped: str | None = "refuse",
              ssh_conn_id: str | None = None, rest_token_conn_id: str | None = None, sudo: str | None = None,
              work_dir: str | None = None) -> IdentitySettings:
        """Settings from the options' text.

        :raises ConfigurationError: a malformed option; a mapping without an allowlist (it would
            otherwise be ignored, and jobs run as the service account without anyone noticing); a
            mapping to a user outside the allowlist.
        """
        allow = parse_users(users)
        pairs = parse_mapping(mapping)
        if pairs and not allow:
            raise ConfigurationError(
                "[hpcai] run_as_mapping is set but run_as_users is empty: list the Slurm users jobs may run as "
                "in run_as_users (refusing, rather than running every job as the connection's account)")
        outside = sorted({user for user in pairs.values() if user not in allow})
        if outside:
            raise ConfigurationError(f"[hpcai] run_as_mapping maps to {outside}, which run_as_users does not list")
        mode = (unmapped or "refuse").strip().lower()
        if mode not in ("refuse", "service"):
            raise ConfigurationError(f"[hpcai] run_as_unmapped = {_shown(unmapped)}: use refuse or service")
        settings = cls(users=allow, mapping=pairs, unmapped=mode,  # type: ignore[arg-type]
                       ssh_conn_id=(ssh_conn_id or "ssh_{user}").strip(),
                       rest_token_conn_id=(rest_token_conn_id or "").strip(), sudo=(sudo or "sudo").strip(),
                       work_dir=(work_dir or "").strip())
        format_for_user(settings.ssh_conn_id, "u", "run_as_ssh_conn_id")  # fail now, not at the first job
        if settings.rest_token_conn_id:
            format_for_user(settings.rest_token_conn_id, "u", "run_as_rest_token_conn_id")
        if settings.work_dir:
            if not settings.work_dir.startswith("/"):
                raise ConfigurationError(f"[hpcai] run_as_work_dir = {settings.work_dir!r} must be an absolute path")
            format_for_user(settings.work_dir, "u", "run_as_work_dir")
        return settings

    @classmethod
    def from_config(cls) -> IdentitySettings:
        """The settings in ``[hpcai]`` now (read on every call: cheap, and a change applies at once)."""
        from airflow_provider_hpcai import config

        return cls.parse(users=config.get("run_as_users"), mapping=config.get("run_as_mapping"),
                         unmapped=config.get("run_as_unmapped"), ssh_conn_id=config.get("run_as_ssh_conn_id"),
                         rest_token_conn_id=config.get("run_as_rest_token_conn_id"), sudo=config.get("run_as_sudo"),
                         work_dir=config.get("run_as_work_dir"))

    def user_work_dir(self, user: str) -> str | None:
        """The configured working directory of ``user`` (``None``: the transport's default for the user)."""
        return format_for_user(self.work_dir, user, "run_as_work_dir") if self.work_dir else None


def check_user(user: object, settings: IdentitySettings, *,
               uid_of: Callable[[str], int | None] = local_uid) -> str:
    """``user`` when jobs may run as it now: well formed, not root, not uid 0 here, allowlisted.

    :raises RunAsRefusedError: otherwise.
    """
    name = check_user_name(user)
    if not settings.enabled:
        raise RunAsRefusedError(
            f"jobs cannot run as {name!r}: [hpcai] run_as_users is empty, so every job runs as the Slurm "
            "connection's account; list the users jobs may run as there")
    if uid_of(name) == 0:
        raise RunAsRefusedError(f"run_as {name!r} has uid 0 on this host: jobs never run as root")
    if name not in settings.users:
        raise RunAsRefusedError(
            f"Slurm user {name!r} is not in [hpcai] run_as_users ({', '.join(sorted(settings.users))}): add it "
            "there if jobs may run as it")
    return name


def resolve(owner: object, run_as: object = None, settings: IdentitySettings | None = None, *,
            uid_of: Callable[[str], int | None] = local_uid) -> str | None:
    """The Slurm user a task's job runs as.

    ``run_as`` when given, else the task's ``owner``, is looked up in the mapping; a key the
    mapping does not have may name an allowlisted user directly. The user is then checked by
    :func:`check_user`.

    :param owner: the task's owner (Airflow's ``owner``, usually from the DAG's default_args).
    :param run_as: the task's ``run_as`` (``None``/empty: use the owner).
    :param settings: the options (default: read from ``[hpcai]``).
    :returns: the user, or ``None`` when the job runs as the connection's own account: the
        feature is off (no allowlist, no ``run_as``), or the owner maps to nobody and
        ``run_as_unmapped = service``.
    :raises RunAsRefusedError: root, a malformed name, a user outside the allowlist, a
        ``run_as`` with the feature off, an owner that maps to nobody (``refuse``).
    :raises ConfigurationError: the options themselves are malformed.
    """
    settings = IdentitySettings.from_config() if settings is None else settings
    explicit = run_as not in (None, "")
    if not settings.enabled:
        if explicit:
            check_user_name(run_as)
            raise RunAsRefusedError(
                f"run_as={run_as!r} needs [hpcai] run_as_users (the allowlist of Slurm users jobs may run as); "
                "without it every job runs as the Slurm connection's account")
        return None
    key = run_as if explicit else owner
    if not isinstance(key, str) or not key:
        raise RunAsRefusedError(f"{'run_as' if explicit else 'owner'} must be a non-empty text, not {_shown(key)}")
    if key.lower() in _ALWAYS_REFUSED:  # an owner "root" is refused as root, not as "unmapped"
        raise RunAsRefusedError(f"{'run_as' if explicit else 'owner'} {key!r}: jobs never run as root, whatever "
                                "the configuration says; give the DAG a person's or team's owner, or the task run_as")
    if key in settings.mapping:
        return check_user(settings.mapping[key], settings, uid_of=uid_of)
    if key in settings.users:
        return check_user(key, settings, uid_of=uid_of)
    if explicit:
        check_user_name(key)  # root and malformed names say so first
        raise RunAsRefusedError(
            f"run_as={key!r} is neither a key of [hpcai] run_as_mapping nor a user in run_as_users "
            f"({', '.join(sorted(settings.users))})")
    if settings.unmapped == "service":
        return None
    raise RunAsRefusedError(
        f"owner {_shown(key)} maps to no Slurm user: add '{key if _KEY.fullmatch(key) else '<owner>'}=<user>' to "
        "[hpcai] run_as_mapping, give the task run_as=..., or set run_as_unmapped = service to run such tasks "
        "as the connection's account")
