"""What a builder returns: the pieces a backend puts around a command to run it in a container."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["Launch"]


@dataclasses.dataclass(frozen=True)
class Launch:
    """How to start one command in a container.

    :param options: for ``srun``-based runtimes (``oci``, ``pyxis``) the ``srun`` options that
        select the container; for the others the command prefix (``apptainer exec ... IMAGE``,
        ``podman run ... IMAGE``).
    :param command: the command to run inside, possibly wrapped (a ``cd`` to the working
        directory where the runtime has no option for it).
    :param env: variables the *launching* process must have in its environment. Values never
        travel on a command line: the runtime copies them in by name (``srun --export=NAMES``,
        pyxis ``--container-env``, ``APPTAINERENV_*``, ``podman --env NAME``).
    :param srun: whether :attr:`options` are ``srun`` options (else a command prefix).
    """

    options: tuple[str, ...]
    command: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    srun: bool = False

    @property
    def argv(self) -> list[str]:
        """The whole command: ``srun`` + options + command, or prefix + command."""
        return (["srun"] if self.srun else []) + list(self.options) + list(self.command)
