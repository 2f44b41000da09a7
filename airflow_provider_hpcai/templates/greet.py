"""A tiny program for the built-in ``hello-local`` template's ``bash`` stages.

Run as ``python3 -m airflow_provider_hpcai.templates.greet TEXT [REPEATS]`` (prints ``TEXT``
``REPEATS`` times) or ``... greet --machine`` (prints the worker's CPU count and
``$HPCAI_INSTANCE``). Every argument is data: nothing is evaluated.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the greeting, or what the worker machine offers.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :return: the exit code.
    """
    parser = argparse.ArgumentParser(prog="python3 -m airflow_provider_hpcai.templates.greet")
    parser.add_argument("text", nargs="?", default="", help="what to print")
    parser.add_argument("repeats", nargs="?", type=int, default=1, help="how many times (1-100)")
    parser.add_argument("--machine", action="store_true", help="print the CPU count and $HPCAI_INSTANCE")
    args = parser.parse_args(argv)
    if args.machine:
        print("cpus", os.cpu_count(), "instance", os.environ.get("HPCAI_INSTANCE", "?"))
        return 0
    if not 1 <= args.repeats <= 100:
        parser.error("repeats must be between 1 and 100")
    print("\n".join([args.text] * args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
