"""The ``hpcai`` command: ``hpcai advisor ...`` and ``hpcai templates ...``."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-command modules; each has ``add_parser(subparsers)`` and sets ``func`` on its parsers.
_COMMANDS = ("airflow_provider_hpcai.advisor.cli", "airflow_provider_hpcai.templates.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcai", description="airflow-provider-hpcai tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one clear line instead of a traceback for expected errors
        from airflow_provider_hpcai.exceptions import HpcAiError

        if isinstance(err, (HpcAiError, ValueError, FileNotFoundError)):
            print(f"hpcai: error: {err}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
