"""A process-wide cached champion model, read from a local JSON export.

Promotion (:mod:`~airflow_provider_hpcai.advisor.registry`) writes ``<advisor_home>/champion.json``.
:func:`get_champion` returns the :class:`~airflow_provider_hpcai.advisor.models.CompactModel`
from that file, re-reading it only when its modification time changes, and checking the time
at most every ``check_every`` seconds. MLflow is never imported here: the call path is a dict
lookup, a clock read and, now and then, one ``os.stat``. A missing or corrupt file gives
``None`` (callers keep the users' values). A missing file is the normal state of a fresh
install: it is said once per process, at info level (``hpcai advisor status`` says what to do);
a corrupt one is a warning, once per path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from airflow_provider_hpcai.advisor.models import CompactModel

__all__ = ["CHAMPION_FILE", "ChampionCache", "clear_caches", "get_champion", "write_champion"]

log = logging.getLogger(__name__)
CHAMPION_FILE = "champion.json"
#: Whether this process already said that there is no champion (once per process, any home).
_said_missing = False


def _say_missing(path: str) -> None:
    global _said_missing
    if not _said_missing:
        _said_missing = True
        log.info("No advisor champion at %s yet: tasks keep their requested resources. Run "
                 "'hpcai advisor status' to see what the advisor needs.", path)


class ChampionCache:
    """The champion exported under one advisor home.

    :param home: the advisor home folder (holds ``champion.json``).
    :param check_every: seconds between checks of the file's modification time.
    """

    def __init__(self, home: str, check_every: float = 30.0) -> None:
        self.path = os.path.join(os.path.abspath(home), CHAMPION_FILE)
        self.check_every = check_every
        self._model: CompactModel | None = None
        self._mtime: tuple[int, int] | None = None
        self._next_check = 0.0
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def _warn_once(self, problem: str, message: str) -> None:
        if problem not in self._warned:
            self._warned.add(problem)
            log.warning(message)

    def refresh(self) -> None:
        """Re-read the file if its modification time changed (or it appeared or vanished)."""
        with self._lock:
            try:
                stat = os.stat(self.path)
                mtime = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                _say_missing(self.path)
                self._model, self._mtime = None, None
                return
            if mtime == self._mtime:
                return
            self._mtime = mtime
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self._model = CompactModel.from_dict(json.load(handle))
                self._warned.discard("corrupt")
            except Exception as error:  # a half-written or foreign file must not break callers
                self._model = None
                self._warn_once("corrupt", f"advisor champion {self.path} is unreadable ({error}); "
                                "using the users' requests until it is exported again")

    def get(self) -> CompactModel | None:
        """The champion, or ``None`` when there is none (cheap: checks the file now and then)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_every
            self.refresh()
        return self._model


_CACHES: dict[str, ChampionCache] = {}


def get_champion(home: str, check_every: float = 30.0) -> CompactModel | None:
    """The cached champion of ``home`` for this process (``None`` when missing or corrupt)."""
    cache = _CACHES.get(home)
    if cache is None:
        cache = _CACHES.setdefault(home, ChampionCache(home, check_every))
    return cache.get()


def clear_caches() -> None:
    """Forget every cached champion (tests, or after changing the home folder)."""
    _CACHES.clear()


def write_champion(home: str, model: CompactModel) -> str:
    """Write ``model`` as ``<home>/champion.json`` atomically; returns the path."""
    os.makedirs(home, exist_ok=True)
    path = os.path.join(os.path.abspath(home), CHAMPION_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(model.to_dict(), handle)
    os.replace(tmp, path)
    return path
