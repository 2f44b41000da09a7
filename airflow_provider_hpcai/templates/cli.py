"""``hpcai templates ...``: the template repository from the command line.

The provider's CLI (``airflow_provider_hpcai.cli``) calls :func:`add_parser` with its
sub-parsers; every sub-command stores its handler as ``func`` (``args.func(args)`` runs it
and returns the exit code). ``python -m airflow_provider_hpcai.templates.cli`` works too.

Exit codes: 0 success, 1 a repository error (conflict, not found), 2 bad input.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main", "parse_param"]


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is JSON when it parses as JSON, else a string.

    >>> parse_param("repeats=3"), parse_param("greeting=hi there")
    (('repeats', 3), ('greeting', 'hi there'))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use --param NAME=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _json_arg(text: str) -> Any:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(raw)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}); pass JSON text or @file.json") from None


def _repo(args: argparse.Namespace) -> Any:
    import dataclasses

    from airflow_provider_hpcai.templates.configured import open_repository
    from airflow_provider_hpcai.templates.settings import load_settings

    settings = load_settings()
    if args.root:
        settings = dataclasses.replace(settings, root=Path(args.root))
    return open_repository(settings)


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else human)


def _table(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no templates"
    lines = [f"{'NAME':<28} {'VERSION':<12} {'DOMAIN':<14} {'SOURCE':<9} TITLE"]
    for e in entries:
        origin = e.get("origin", "site")
        lines.append(f"{e['name']:<28} {e['version']:<12} {e['domain']:<14} {origin:<9} {e['title']}")
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    entries = _repo(args).list_templates(include_deprecated=args.all)
    _print(args, entries, _table(entries))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    entries = _repo(args).search(args.text, domain=args.domain, tag=args.tag)
    _print(args, entries, _table(entries))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    version = _repo(args).get(args.name, args.version)
    data = version.to_dict(with_source=True)
    human = (
        f"{data['name']} {data['version']}{'  (DEPRECATED)' if data['deprecated'] else ''}\n"
        f"{data['title']}\n{data['description']}\n"
        f"domain: {data['domain']}  tags: {', '.join(data['tags'])}  backends: {', '.join(data['backends'])}\n"
        f"sha256: {data['checksum']}  published {data['published_at']} by {data['publisher']}\n"
        f"parameters: {', '.join(data['parameters'].get('properties', {})) or '(none)'}"
    )
    _print(args, data, human)
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    rows = _repo(args).versions(args.name)
    human = "\n".join(
        f"{r['version']:<14} {r['checksum'][:12]}  {r['published_at']}{'  deprecated' if r['deprecated'] else ''}"
        for r in rows
    )
    _print(args, rows, human)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.path:
        manifest = repo.validate_manifest(Path(args.path))
        _print(args, manifest.summary(), f"OK: {manifest.name} {manifest.version} is a valid manifest")
        return 0
    if not args.template:
        raise SystemExit("validate: give a manifest PATH, or --template NAME with --params/--param")
    params = {**(args.params or {}), **dict(args.param or [])}
    filled = repo.validate_params(args.template, args.version, params)
    _print(args, filled, f"OK: parameters are valid for {args.template}: {json.dumps(filled, sort_keys=True)}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    version = _repo(args).publish(
        Path(args.path), publisher=args.publisher or getpass.getuser(), take_over=args.take_over
    )
    _print(
        args,
        version.to_dict(),
        f"published {version.manifest.name} {version.manifest.version} (sha256 {version.checksum})",
    )
    return 0


def _cmd_deprecate(args: argparse.Namespace) -> int:
    version = _repo(args).deprecate(args.name, args.version, reason=args.reason, by=getpass.getuser())
    _print(args, version.to_dict(), f"deprecated {args.name} {args.version}")
    return 0


def _cmd_instantiate(args: argparse.Namespace) -> int:
    params = {**(args.params or {}), **dict(args.param or [])}
    record = _repo(args).instantiate(
        args.name,
        args.version,
        params,
        args.owner or getpass.getuser(),
        resources=args.resources,
        dag_id=args.dag_id,
    )
    _print(
        args,
        record,
        f"created instance {record['id']}: DAG {record['dag_id']} appears after the dag processor's next parse",
    )
    return 0


def _cmd_instances(args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.delete:
        record = repo.delete_instance(args.delete)
        _print(args, record, f"deleted instance {record['id']} (DAG {record['dag_id']})")
        return 0
    rows = repo.list_instances(args.template)
    human = "\n".join(
        f"{r.get('id', '?'):<32} {r.get('dag_id', '?'):<36} {r.get('template')} {r.get('version')}  "
        f"{r.get('owner')}  {r.get('created')}"
        for r in rows
    )
    _print(args, rows, human or "no instances")
    return 0


def _run(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from airflow_provider_hpcai.templates.errors import TemplateError, TemplateValidationError

        try:
            return int(handler(args))
        except TemplateValidationError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except TemplateError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``templates`` and its sub-commands on an ``argparse`` sub-parsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="repository folder (default: [hpcai] templates_dir / HPCAI_TEMPLATES_DIR)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = subparsers.add_parser("templates", help="workflow templates: list, publish, instantiate")
    sub = parser.add_subparsers(dest="templates_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(func=_run(handler))
        return p

    p = command("list", _cmd_list, "list templates (latest version of each)")
    p.add_argument("--all", action="store_true", help="include templates whose versions are all deprecated")
    p = command("search", _cmd_search, "search by text, domain and tag")
    p.add_argument("text", nargs="?", default=None)
    p.add_argument("--domain")
    p.add_argument("--tag")
    p = command("show", _cmd_show, "show one template version")
    p.add_argument("name")
    p.add_argument("--version", help="default: the latest non-deprecated version")
    p = command("versions", _cmd_versions, "list a template's versions")
    p.add_argument("name")
    p = command("validate", _cmd_validate, "check a manifest, or parameters for a template")
    p.add_argument("path", nargs="?", help="template folder or template.yaml")
    p.add_argument("--template", help="check parameters for this published template instead")
    p.add_argument("--version")
    p.add_argument("--params", type=_json_arg, help="parameters as JSON or @file.json")
    p.add_argument("--param", type=parse_param, action="append", help="one parameter NAME=VALUE (repeatable)")
    p = command("publish", _cmd_publish, "publish a template folder (versions are immutable)")
    p.add_argument("path", help="template folder or template.yaml")
    p.add_argument("--publisher", help="recorded publisher (default: the current user)")
    p.add_argument("--take-over", action="store_true",
                   help="publish a new version of a template someone else owns (or of a built-in one)")
    p = command("deprecate", _cmd_deprecate, "deprecate a version")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--reason", default="")
    p = command("instantiate", _cmd_instantiate, "create a DAG from a template")
    p.add_argument("name")
    p.add_argument("--version")
    p.add_argument("--params", type=_json_arg, help="parameters as JSON or @file.json")
    p.add_argument("--param", type=parse_param, action="append", help="one parameter NAME=VALUE (repeatable)")
    p.add_argument("--resources", type=_json_arg, help="resource overrides as JSON, e.g. '{\"memory\": \"2G\"}'")
    p.add_argument("--owner", help="DAG owner (default: the current user)")
    p.add_argument("--dag-id", dest="dag_id")
    p = command("instances", _cmd_instances, "list instances (or delete one)")
    p.add_argument("--template")
    p.add_argument("--delete", metavar="INSTANCE_ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``templates ...`` on its own (``python -m airflow_provider_hpcai.templates.cli list``)."""
    parser = argparse.ArgumentParser(prog="hpcai")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["templates", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
