"""A pytest plugin for ``make test``: say which suite is running, and name the slow tests.

Loaded by ``scripts/run-tests`` with ``-p tests._progress``. With ``-q`` pytest prints only dots,
and the fault suite's first test takes minutes, so a newcomer sees a run that looks hung. This
prints a line when each suite (``tests/<suite>/``) starts, with its test count and the time, the
name of each test in the suites that run real services as it starts, and one line per suite
when it ends (passed, failed, skipped, minutes). ``--durations`` in the same script lists the
slowest tests at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

#: Suites whose tests each take seconds to minutes: their names are printed as they start.
NAMED_SUITES = frozenset({"faults", "integration"})


def suite_of(nodeid: str) -> str:
    """``tests/faults/test_x.py::test_y`` -> ``faults``; files directly in tests/ -> ``tests``."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


class SuiteProgress:
    """Tracks the current suite and writes its header, test names and footer."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.sizes: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.current: str | None = None
        self.started = 0.0

    def _write(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # After a row of dots (or its "[ 42%]"), start a new line first.
        if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
            reporter.write("\n")
        reporter.write_line(text)

    def _close(self) -> None:
        if self.current is None:
            return
        minutes = (time.monotonic() - self.started) / 60
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items())) or "nothing ran"
        self._write(f"== suite {self.current} done in {minutes:.1f} min: {counts}")

    @pytest.hookimpl
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.sizes = Counter(suite_of(item.nodeid) for item in items)
        self._write("== suites: " + ", ".join(f"{s} ({n} tests)" for s, n in self.sizes.items()))

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        suite = suite_of(nodeid)
        if suite != self.current:
            self._close()
            self.current, self.started, self.outcomes = suite, time.monotonic(), Counter()
            self._write(f"== suite {suite}: {self.sizes.get(suite, 0)} tests, started {time.strftime('%H:%M:%S')}")
        if suite in NAMED_SUITES:
            self._write(f"   {time.strftime('%H:%M:%S')} {nodeid}")

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[report.outcome] += 1

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        self._close()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SuiteProgress(config), "hpcai-suite-progress")
