"""A template repository kept in git: every publish and deprecation is a commit.

The working tree has the same layout as the local backend, so readers are identical.
Instance records are runtime state and stay out of history (``.gitignore``). With a
remote configured, each commit is pushed; a failed push is reported, the local commit
stays, and the next successful push carries it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from airflow_provider_hpcai.templates.errors import TemplateError
from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings

__all__ = ["GitTemplateRepository", "git_argv"]

_IGNORED = "instances/\n.lock\n.tmp-*\n"


def git_argv(root: Path, *args: str) -> list[str]:
    """The argv of one git command run against ``root`` (no shell involved)."""
    return [
        "git",
        "-C",
        str(root),
        "-c",
        "user.name=hpcai-templates",
        "-c",
        "user.email=hpcai-templates@localhost",
        "-c",
        "commit.gpgsign=false",
        *args,
    ]


class GitTemplateRepository(TemplateRepository):
    """A :class:`TemplateRepository` whose ``root`` is a git working tree.

    :param root: the working tree (initialised on first use when it is not a repository).
    :param settings: settings; ``git_remote`` names the remote to push to.
    """

    backend = "git"

    def __init__(self, root: str | Path, settings: TemplateSettings | None = None) -> None:
        super().__init__(root, settings)
        self.push_error: str | None = None

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = git_argv(self.root, *args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise TemplateError(
                f"git failed: git {' '.join(args)} (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}"
            )
        return proc

    def _ensure_repo(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            self._git("init", "-q")
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_IGNORED)

    def _after_change(self, message: str) -> None:
        self._ensure_repo()
        self._git("add", "-A", "--", "templates", ".gitignore")
        if self._git("diff", "--cached", "--quiet", check=False).returncode == 0:
            return  # nothing new (e.g. an identical republish)
        self._git("commit", "-q", "-m", message)
        remote = self.settings.git_remote
        if remote:
            proc = self._git("push", "-q", remote, "HEAD", check=False)
            self.push_error = proc.stderr.strip() if proc.returncode else None

    def history(self, limit: int = 50) -> list[str]:
        """The last ``limit`` commit subjects, newest first."""
        if not (self.root / ".git").exists():
            return []
        proc = self._git("log", f"-n{int(limit)}", "--format=%s", check=False)
        return [line for line in proc.stdout.splitlines() if line]
