"""Crash-safe file operations for the template repository.

Every change becomes visible through one ``rename``: files are written to a temporary
name in the same folder, flushed with ``fsync``, renamed into place, and the folder is
synced. A published version is a folder renamed into place in one step, so a process
killed at any moment leaves it either complete or absent. Writers also serialise on an
``fcntl.flock`` lock file; the kernel drops the lock when a holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from airflow_provider_hpcai.templates.errors import RepositoryBusyError

__all__ = ["TMP_PREFIX", "atomic_write", "fsync_dir", "publish_dir", "remove_debris", "repository_lock"]

#: Names starting with this are unfinished writes; readers skip them, writers clean them up.
TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def publish_dir(target: Path, files: dict[str, bytes]) -> bool:
    """Create folder ``target`` holding ``files``, all at once.

    :return: ``True`` if this call created it, ``False`` if ``target`` already existed (the
        caller decides whether that is a conflict).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        fsync_dir(tmp)
        if target.exists():
            return False
        try:
            # rename(2) onto an existing non-empty folder fails: a second writer cannot clobber.
            os.rename(tmp, target)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
        fsync_dir(target.parent)
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_debris(folder: Path) -> int:
    """Delete unfinished writes left in ``folder`` by killed processes (call under the lock).

    :return: how many were removed.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def repository_lock(root: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold the repository's exclusive write lock (``<root>/.lock``).

    :param timeout: seconds to wait before raising :class:`RepositoryBusyError`.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RepositoryBusyError(
                        f"the template repository at {root} stayed locked for {timeout:.0f} s; "
                        "another publish is running or hung: retry in a moment"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
