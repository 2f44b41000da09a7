"""Progress lines on stdout: ``progress: step 40/200 (20%)``, flushed, a bounded number."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ProgressReporter", "format_progress"]


def format_progress(step: int, total: int, unit: str = "step") -> str:
    """Return the progress line for ``step`` of ``total``."""
    pct = 100 if total <= 0 else int(100 * step / total)
    return f"progress: {unit} {step}/{total} ({pct}%)"


class ProgressReporter:
    """Print at most ``lines`` progress lines (plus the final one) over ``total`` steps.

    :param total: number of steps of the run.
    :param lines: how many lines to print over the run.
    :param enabled: False on every rank but 0.
    :param unit: word printed before the counts.
    :param stream: where to print (stdout by default).
    """

    def __init__(
        self,
        total: int,
        *,
        lines: int = 20,
        enabled: bool = True,
        unit: str = "step",
        stream: TextIO | None = None,
    ) -> None:
        self.total = max(int(total), 0)
        self.every = max(1, -(-self.total // max(lines, 1)))
        self.enabled = enabled
        self.unit = unit
        self.stream = stream
        self.printed = 0
        self._last = -1

    def update(self, step: int) -> None:
        """Report that ``step`` steps are done; prints only on multiples of the stride and at the end."""
        if not self.enabled or step == self._last:
            return
        if step % self.every == 0 or step >= self.total:
            self._last = step
            print(format_progress(step, self.total, self.unit), file=self.stream or sys.stdout, flush=True)
            self.printed += 1
