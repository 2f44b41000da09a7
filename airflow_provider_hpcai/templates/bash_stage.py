"""The operator behind ``kind: bash`` stages: an argv list, quoted, never templated.

Imported only when a DAG with a bash stage is built (it pulls in Airflow's BashOperator).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.providers.standard.operators.bash import BashOperator

__all__ = ["PYTHON_WORDS", "QuotedBashOperator", "build_bash_command"]

#: A first word that means "the worker's own Python": the interpreter running this task, so
#: ``python3 -m module`` finds the modules installed with Airflow and the provider, whatever
#: ``PATH`` holds.
PYTHON_WORDS = frozenset({"python", "python3"})


def build_bash_command(argv: Sequence[str | int | float]) -> str:
    """Join ``argv`` into one shell command in which every word is quoted.

    >>> build_bash_command(["echo", "a b", "$(id)"])
    "echo 'a b' '$(id)'"
    """
    words = [str(word) for word in argv]
    if not words or not words[0]:
        raise ValueError("a bash stage needs a non-empty argv whose first word is the program")
    for word in words:
        if "\x00" in word:
            raise ValueError("argv words cannot contain NUL bytes")
    return shlex.join(words)


class QuotedBashOperator(BashOperator):
    """Run one program with its arguments, each shell-quoted; nothing is rendered by Jinja.

    Template parameters are user data: this operator has no templated fields, so a value
    like ``{{ ... }}`` or ``$(...)`` reaches the program as literal text.

    A first word ``python`` or ``python3`` runs the worker's own interpreter
    (:data:`PYTHON_WORDS`).

    :param argv: the program and its arguments.
    :param env: extra environment variables (added to the worker's environment).
    """

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {}

    def __init__(
        self, *, argv: Sequence[str | int | float], env: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.argv = [str(word) for word in argv]
        super().__init__(
            bash_command=build_bash_command(self.argv),
            env={str(k): str(v) for k, v in env.items()} if env else None,
            append_env=True,
            skip_on_exit_code=None,
            **kwargs,
        )

    def worker_command(self) -> str:
        """The command this task runs on the worker (``python3`` made the worker's interpreter)."""
        if self.argv[0] in PYTHON_WORDS:
            return build_bash_command([sys.executable, *self.argv[1:]])
        return build_bash_command(self.argv)

    def execute(self, context: Any) -> Any:
        """Run :meth:`worker_command` through Airflow's BashOperator."""
        self.bash_command = self.worker_command()
        return super().execute(context)
