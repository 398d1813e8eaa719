"""`idwell-sync validate [PATH...]`: check tenant and mapping files, for people and CI.

Never resolves a secret and never connects to a database. Exit codes: 0 valid (warnings
allowed), 1 invalid, 2 usage error (no such path, nothing to check).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import ExitCode

HELP = "check tenant and mapping files (schema and semantic rules; no database, no secrets)"
DEFAULT_PATHS = ("tenants", "mappings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.commands._common import add_mapping_dir
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="tenant or mapping files, or folders of them (default: tenants/ and mappings/)")
    parser.add_argument("--format", choices=("text", "json", "github"), default="text",
                        help="text (default), json, or github (GitHub Actions annotations)")
    add_mapping_dir(parser)
    parser.add_argument("--max-errors", type=error_count, default=50, metavar="N",
                        help="text format: show at most N problems (0: all; default 50)")


def error_count(text: str) -> int:
    """--max-errors: 0 (all) or more; a negative number is a usage error (exit 2), as for the others."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of problems: give 0 (all) or more")
    return n


def main(args: argparse.Namespace) -> int:
    from engine.config import collect_files, validate_paths
    from engine.config._format import format_problems
    from engine.config._yaml import display_name

    paths = args.paths or [p for p in DEFAULT_PATHS if Path(p).is_dir()]
    if not paths:
        return _usage("no PATH given and no tenants/ or mappings/ folder here")
    try:
        files = collect_files(paths)
    except FileNotFoundError as exc:
        return _usage(f"no such file or folder: {exc}")
    if not files:
        tenant_files = [f"tenants/{Path(p).name}{s}" for p in paths for s in (".yaml", ".yml")
                        if Path("tenants", Path(p).name + s).is_file()]
        return _usage("no .yaml files found in " + ", ".join(str(p) for p in paths)
                      + (f" (validate takes files and folders, not tenant ids: {', '.join(tenant_files)} is there)"
                         if tenant_files else ""))
    problems = validate_paths(files, mapping_dirs=args.mapping_dir)
    # a tenant's problem may lie in its mapping (a field the override's query no longer selects):
    # that file was checked too, though not named, and counts among the files
    checked = {display_name(f) for f in files} | {p.file for p in problems}
    print(format_problems(problems, len(checked), args.format, args.max_errors))
    return ExitCode.INVALID if any(p.severity == "error" for p in problems) else ExitCode.OK


def _usage(message: str) -> int:
    print(f"idwell-sync validate: error: {message}", file=sys.stderr)
    return ExitCode.USAGE
