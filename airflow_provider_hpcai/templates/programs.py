"""What a template's ``bash`` stage may run, and with which environment.

A ``bash`` stage of a published manifest runs on an Airflow worker, as the worker's user, next
to the worker's secrets. Publishing a manifest is not a code-review act (an Op may do it), so a
manifest may only *choose* among programs the deployment allows; it never brings code of its
own:

* the program (``argv[0]``, or ``python3 -m <module>``) must match an entry of
  ``[hpcai] template_bash_programs`` (see
  :data:`~airflow_provider_hpcai.templates.settings.DEFAULT_BASH_PROGRAMS`); it is literal text
  in the manifest, never a placeholder;
* everything after it is data for that program: interpreters are allowed only as
  ``python3 -m module``, so ``python3 -c CODE``, ``sh -c CODE`` or ``env PROGRAM`` cannot be
  expressed unless a site adds such an entry itself;
* the stage's ``env`` passes the same deny-list as a job's environment
  (:func:`airflow_provider_hpcai.spec.validate_env`) plus the variables that change how the
  shell, the dynamic loader or an interpreter start (``PATH``, ``LD_*``, ``PYTHON*``...).

An allow-list entry is a program name (``echo``), an absolute path (``/opt/site/bin/solve``), or
``python3 -m module`` where a module name ending in ``.*`` allows every module under it.

The other stage kinds take only the operator arguments that are data (:data:`STAGE_ARGS`):
never ``run_as_user``, ``executor_config``, ``queue`` or a simulation's ``python`` interpreter.
A ``slurm_job`` stage's ``script`` is shell code run on the cluster under the Slurm
connection's account, so such stages are refused unless ``[hpcai] template_job_scripts`` says
the site's publishers are trusted with that account (publishing is then a code-review act).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_hpcai.templates.errors import TemplateValidationError

__all__ = [
    "CODE_KINDS",
    "STAGE_ARGS",
    "STAGE_ENV_DENIED",
    "StagePolicy",
    "check_bash_stage",
    "check_stage_env",
    "match_program",
]

_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
#: Names a stage environment may not set, on top of :func:`~airflow_provider_hpcai.spec.validate_env`'s.
STAGE_ENV_DENIED = frozenset({"PATH", "SHELLOPTS", "BASHOPTS", "GLOBIGNORE", "PROMPT_COMMAND", "CDPATH",
                              "PERL5OPT", "PERL5LIB", "RUBYOPT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS"})
_DENIED_PREFIXES = ("LD_", "PYTHON", "BASH_", "DYLD_")
_JOB_ARGS = frozenset({"job_resources", "environment", "job_name", "workdir", "deferrable", "poll_interval",
                       "escalate_on_retry", "avoid_failed_nodes", "durable", "retries", "doc_md"})
#: Operator arguments each stage kind may set from a manifest (``bash``: see the manifest schema).
STAGE_ARGS: dict[str, frozenset[str]] = {
    "slurm_job": _JOB_ARGS | {"script", "array", "slurm_conn_id"},
    "simulation": _JOB_ARGS | {"kernel", "kernel_params", "ranks", "backend", "conn_id", "launcher", "output_dir",
                               "device"},
    "kubernetes_job": _JOB_ARGS | {"image", "script", "cmds", "kubernetes_conn_id", "namespace"},
}
#: Kinds that run the publisher's own code (a script, or any container image): allowed only
#: where ``[hpcai] template_job_scripts`` trusts publishers with the connection's account.
CODE_KINDS = frozenset({"slurm_job", "kubernetes_job"})


@dataclasses.dataclass(frozen=True)
class StagePolicy:
    """What stages of a published manifest may do (from ``[hpcai]``, see :mod:`.settings`).

    :param bash_programs: ``template_bash_programs`` entries.
    :param job_scripts: whether ``slurm_job`` stages (publisher's shell code on the cluster) are allowed.
    """

    bash_programs: tuple[str, ...]
    job_scripts: bool = False

    def check(self, kind: str, args: Mapping[str, Any], where: str) -> None:
        """Check one stage's (unresolved or resolved) arguments.

        :raises TemplateValidationError: saying what is not allowed and what to do instead.
        """
        if kind == "bash":
            check_bash_stage(args.get("argv") or [], args.get("env"), self.bash_programs, where)
            return
        allowed = STAGE_ARGS.get(kind)
        if allowed is None:
            return
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise TemplateValidationError(
                f"{where}: {', '.join(unknown)} cannot be set by a template ({kind} stages take "
                f"{', '.join(sorted(allowed))}); operator settings such as run_as_user, queue or the "
                "interpreter are the deployment's"
            )
        if kind in CODE_KINDS and not self.job_scripts:
            what = "its script" if kind == "slurm_job" else "its container image and command"
            raise TemplateValidationError(
                f"{where}: a {kind} stage runs {what}, the publisher's own code, as the connection's "
                "account, which this site does not allow in templates ([hpcai] "
                "template_job_scripts = False); use a simulation stage or an installed entrypoint factory"
            )
        if isinstance(args.get("environment"), Mapping):
            check_stage_env(args["environment"], where)


def _entry_words(entry: str) -> list[str]:
    return entry.split()


def match_program(argv: Sequence[Any], allowed: Iterable[str]) -> int:
    """How many leading words of ``argv`` name an allowed program (0 when none matches).

    >>> match_program(["echo", "hi"], ["echo"])
    1
    >>> match_program(["python3", "-m", "simulation_kernels.heat", "--nx", "8"], ["python3 -m simulation_kernels.*"])
    3
    >>> match_program(["python3", "-c", "print(1)"], ["python3 -m simulation_kernels.*"])
    0
    """
    words = [str(w) for w in argv]
    for entry in allowed:
        pattern = _entry_words(entry)
        if not pattern or len(words) < len(pattern):
            continue
        head, last = pattern[:-1], pattern[-1]
        if words[: len(head)] != head:
            continue
        word = words[len(head)]
        if last.endswith(".*"):
            prefix = last[:-1]
            if word.startswith(prefix) and len(word) > len(prefix) and _MODULE_RE.match(word):
                return len(pattern)
        elif word == last:
            return len(pattern)
    return 0


def check_stage_env(env: Mapping[str, Any] | None, where: str) -> None:
    """Refuse stage environment names that change how a program is started.

    :raises TemplateValidationError: naming the variable and what to do instead.
    """
    from airflow_provider_hpcai.exceptions import InvalidJobSpecError
    from airflow_provider_hpcai.spec import validate_env

    names = {str(name): "" for name in (env or {})}
    try:
        validate_env(names)
    except InvalidJobSpecError as err:
        raise TemplateValidationError(f"{where}: {err}") from None
    for name in names:
        if name in STAGE_ENV_DENIED or name.startswith(_DENIED_PREFIXES):
            raise TemplateValidationError(
                f"{where}: the environment variable {name} is not allowed in a template stage (it changes "
                "which program runs or how it starts); pass the value as an argument or another variable"
            )


def check_bash_stage(argv: Sequence[Any], env: Mapping[str, Any] | None, allowed: Iterable[str], where: str) -> None:
    """Check a ``bash`` stage against the program allow-list and the environment deny-list.

    :param argv: the stage's words (placeholders resolved or not: the program words must be
        literal either way).
    :param env: the stage's environment.
    :param allowed: ``[hpcai] template_bash_programs`` entries.
    :param where: names the stage in error messages.
    :raises TemplateValidationError: saying which programs are allowed and how to add one.
    """
    allowed = tuple(allowed)
    count = match_program(argv, allowed)
    if not count or any("{{" in str(word) for word in list(argv)[:count]):
        shown = " ".join(str(w) for w in list(argv)[:3])
        raise TemplateValidationError(
            f"{where}: a bash stage may run only an allowed program with data arguments, not {shown!r}; "
            f"allowed: {', '.join(allowed) or '(none)'}. A deployment admin can add a program to "
            "[hpcai] template_bash_programs; for other code, use an installed 'entrypoint' factory"
        )
    check_stage_env(env, where)
