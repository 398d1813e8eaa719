"""What the tenant commands share: finding the tenant file, the state store, the run date."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine.errors import ConfigError
from engine.plural import counted


def add_tenant_arguments(parser: argparse.ArgumentParser) -> None:
    add_tenant_argument(parser)
    parser.add_argument("--date", type=run_date, default=None,
                        help="run as of this date (YYYY-MM-DD; default: today in the time zone of the tenant's schedule)")
    add_state_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (docs/summary.md)")


def add_state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", default=None,
                        help="state store URL (default: the tenant's state_url, $IDWELL_STATE_URL, or var/state.sqlite "
                             "in the folder that holds the tenants/ folder, else beside the tenant file)")


def run_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2026-06-01") from None


def add_tenant_argument(parser: argparse.ArgumentParser) -> None:
    """TENANT and where it and its mapping are found (every command that reads one tenant)."""
    parser.add_argument("tenant", help="tenant id (tenants/<id>.yaml) or path to a tenant file")
    parser.add_argument("--tenants-dir", default="tenants", help="where tenant ids are looked up (default: tenants)")
    add_mapping_dir(parser)


def add_mapping_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mapping-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="look for mappings here first (may be repeated); then in <tenant folder>/../mappings")


def tenant_path(args) -> Path:
    given = Path(args.tenant)
    # a path: a YAML file's name, or something that exists there; a folder is no tenant file, so
    # a folder named like a tenant (its data, say) does not hide tenants/<id>.yaml
    if given.suffix in (".yaml", ".yml") or given.exists() and not (given.is_dir() and _tenant_files(args)):
        path = given
    else:
        found = _tenant_files(args)
        if len(found) > 1:
            raise ConfigError([], f"tenant '{args.tenant}': two tenant files, {found[0]} and {found[1]}: keep one")
        path = found[0] if found else Path(args.tenants_dir) / f"{args.tenant}.yaml"
    if not path.is_file():
        folder = Path(args.tenants_dir)
        hint = _missing_file_hint(given, folder) if path is given else _missing_tenant_hint(args.tenant, folder)
        what = f"{path} is a folder, not a tenant file, and {folder} holds no {args.tenant}.yaml" \
            if path.is_dir() else f"no tenant file at {path}"
        raise ConfigError([], f"tenant '{args.tenant}': {what}", hint=hint)
    return path


def _tenant_files(args) -> list[Path]:
    """The files of the tenant id args.tenant in the tenants folder (.yaml, .yml)."""
    return [p for p in (Path(args.tenants_dir) / f"{args.tenant}.yaml", Path(args.tenants_dir) / f"{args.tenant}.yml")
            if p.is_file()]


def _missing_file_hint(given: Path, folder: Path) -> str | None:
    """What to do about a tenant file's path that names no file, where the tenants folder holds a
    file of that name (`plan kunde.yaml` typed in the folder above tenants/)."""
    there = folder / given.name
    if there.is_file() and there.absolute() != given.absolute():
        return f"did you mean {there}? Give its path, or the tenant id alone: {given.stem}"
    return None


def _missing_tenant_hint(tenant: str, folder: Path) -> str:
    """What to do about a tenant id whose file is not there: the id it may mean, or the folder it
    was looked up in (a scheduler entry without its `cd` runs in another directory)."""
    from engine.config._text import did_you_mean
    if not folder.is_dir():
        return (f"there is no folder {folder} in {Path.cwd()}: run the command in the folder that holds {folder}/ "
                "(a scheduler entry: `cd` there first), or give --tenants-dir or the tenant file's path")
    ids = sorted({p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml")})
    close = did_you_mean(tenant, ids)
    if close:
        return f"{close} (a tenant id is its file's name in {folder}/)"
    there = f"{counted(len(ids), 'tenant file')} {'is' if len(ids) == 1 else 'are'} there"
    return f"check the id: no file in {folder}/ is named {tenant}.yaml ({there})"


def load(args):
    from engine.config import load_tenant
    tenant = load_tenant(tenant_path(args), mapping_dirs=args.mapping_dir)
    args.tenant_id = tenant.id            # for a failure's --json summary (engine.cli.print_failure)
    return tenant


def state_url(args, tenant) -> str:
    """The state store's URL; secret references in it (${env:..}, ${file:..}) are resolved here."""
    from engine.config.secrets import REFERENCE, Secret, SecretError
    from engine.errors import SecretReferenceError
    url = _named_state_url(args, tenant) or default_state_url(tenant)
    if REFERENCE.search(url):
        try:
            return Secret(url, tenant.path.parent).resolve_url()
        except SecretError as exc:
            raise SecretReferenceError(f"tenant '{tenant.id}': state store: {exc}") from None
    return url


def _named_state_url(args, tenant) -> str | None:
    """The state store's URL as given, first found: --state, the tenant's state_url,
    $IDWELL_STATE_URL; None where none is (the default then applies: default_state_url)."""
    return args.state or tenant.state_url or os.environ.get("IDWELL_STATE_URL")


def check_secrets(args, tenant, *, target: bool = True, state: bool = True) -> None:
    """Every secret reference of the tenant (with `state`, its state store's; its source's; with
    `target`, its target's) that cannot be resolved, named at once (SecretReferenceError, exit 3):
    an operator who sets the first does not meet the next on the following try. Called before
    anything is opened, so that a secret is named before a driver that is missing, say. Only
    references: no value."""
    from engine.config.secrets import REFERENCE, Secret, tenant_secrets, unresolved, unresolved_error
    url = _named_state_url(args, tenant) if state else None     # the default holds no reference
    secrets = [("state store", Secret(url, tenant.path.parent))] if url and REFERENCE.search(url) else []
    if problems := unresolved(secrets + tenant_secrets(tenant, target=target)):
        raise unresolved_error(tenant.id, problems)


def default_state_url(tenant) -> str:
    """var/state.sqlite in the repository of the tenant's file, whatever directory the command
    runs in: one tenant, one store, one lock, also for a scheduler that starts elsewhere. The
    repository is the folder that holds the file's tenants/ folder (as for mappings/), or the
    file's own folder where that is not named tenants. A store an earlier version left at
    var/state.sqlite below the working directory, holding runs of this tenant, is still used
    with a warning while the repository has none; where both exist, the run stops (exit 10)
    until one of them is moved: neither may be dropped without a word. Not where the working
    directory's own tenants/ folder holds a file of this tenant's id (a copy of the tenant kept
    elsewhere to try something): that store is the default of that file, not a leftover."""
    from engine.errors import StateError
    folder = tenant.path.absolute().parent
    home = (folder.parent if folder.name == "tenants" else folder) / "var" / "state.sqlite"
    earlier = Path("var", "state.sqlite").absolute()
    if earlier == home or _home_of_a_tenant_here(tenant.id) or not _has_runs(earlier, tenant.id):
        return f"sqlite:///{home}"
    if home.exists():
        raise StateError(f"tenant '{tenant.id}': two state stores hold this tenant: {home} (the default, beside "
                         f"the tenant files) and {earlier} (below the directory the command runs in, where "
                         "earlier versions kept it)",
                         hint=f"keep the one the nightly runs used: move it to {home}, or name it with --state / "
                              "IDWELL_STATE_URL; then move the other out of the way")
    if (tenant.id, earlier) not in _WARNED:                # once, though a command asks for the URL twice
        _WARNED.add((tenant.id, earlier))
        logging.getLogger(__name__).warning(
            "tenant '%s': using the state store %s below the working directory, where earlier versions kept "
            "it; the default store is now %s, beside the tenant files (the same from any directory): move the "
            "file there, or set IDWELL_STATE_URL", tenant.id, earlier, home)
    return f"sqlite:///{earlier}"


_WARNED: set[tuple[str, Path]] = set()


def _home_of_a_tenant_here(tenant_id: str) -> bool:
    """Whether the working directory's tenants/ folder holds a file of this tenant id: then
    var/state.sqlite below it is that file's default store."""
    return any(Path("tenants", f"{tenant_id}{suffix}").is_file() for suffix in (".yaml", ".yml"))


def _has_runs(path: Path, tenant_id: str) -> bool:
    """Whether the SQLite state store at `path` holds runs of the tenant (False: no such file,
    or not a state store)."""
    import sqlite3
    from contextlib import closing
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT 1 FROM runs WHERE tenant = ? LIMIT 1", (tenant_id,)).fetchone() is not None
    except sqlite3.Error:
        return False


def open_state(args, tenant, *, create: bool = True):
    return open_store(state_url(args, tenant), f"tenant '{tenant.id}'", create=create)


STATE_ELSEWHERE = "name another state store with --state / $IDWELL_STATE_URL or the tenant's state_url"
"""What to do instead of making the SQLite state store writable (or its folder searchable)."""


def open_store(url: str, who: str, *, create: bool = True):
    """The state store at `url` (a URL from state_url); StateError (exit 10) naming `who` (e.g.
    "tenant 'acme'") and the store, without its password, when it cannot be opened. `create=False`:
    to read only (engine.state.StateStore), no table created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from engine.errors import StateError
    from engine.redact import redact
    from engine.state import StateStore, diagnose
    from engine.write_access import why_not_searchable
    if (db := sqlite_file(url)) is not None and (why := why_not_searchable(Path(db), STATE_ELSEWHERE)):
        raise StateError(f"{who}: cannot open the state store {shown_url(url)}: {why[0]}", hint=why[1])
    try:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        store = StateStore(url, create=create)
        logging.getLogger(__name__).info("%s: state store %s", who, store.where)
        return store
    except (OSError, SQLAlchemyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else redact(str(exc)).splitlines()[0][:200]
        hint = ("check --state / $IDWELL_STATE_URL (or the tenant's state_url): a SQLAlchemy URL, an SQLite file in a "
                "folder that can be created and written, or a database server that is reachable")
        if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlite_errorname", None):
            reason, hint = diagnose(make_url(url), exc)     # a damaged or locked file: what the store says once open
        raise StateError(f"{who}: cannot open the state store {shown_url(url)}: {reason}", hint=hint) from None


def shown_url(url: str) -> str:
    """A state store's URL as messages show it: without its password or secret parameters (engine.redact)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from engine.redact import shown_url as shown
    try:
        if "://" in url:
            return shown(make_url(url))
    except ArgumentError:
        pass
    if url.strip() and not set(":@") & set(url):          # a file's path (a value with ':' or '@' may hold a password)
        return (f"(the value given is not a URL: for the SQLite file {url} write "
                f"sqlite:///{Path(url).expanduser().absolute()})")
    return "(the value given is not a URL such as sqlite:///var/state.sqlite)"


def missing_store(url: str) -> str | None:
    """The file of an SQLite store at `url` that does not exist (opening it would create it
    empty); None for a store that exists (a directory in its place too: opening it says so),
    one in a folder that may not be searched (opening it says so: open_store), or is not a plain
    SQLite file."""
    from engine.write_access import why_not_searchable
    db = sqlite_file(url)
    return db if db is not None and not why_not_searchable(Path(db), "") and not Path(db).exists() else None


def sqlite_file(url: str) -> str | None:
    """The file of the state store at `url` when it is a plain SQLite file (there or not); None
    for a database server, an in-memory store, a `file:` URI, or a URL that is none."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None                             # open_store says what is wrong with it
    db = parsed.database
    return db if parsed.get_backend_name() == "sqlite" and db and db != ":memory:" and not db.startswith("file:") \
        else None


DELIMITERS = (",", ";")          # of the findings CSV
OTHER_SPREADSHEETS = (".xls", ".xlsm", ".xlsb", ".ods")
"""Spreadsheet formats the report is not written in: a name with one of them is refused."""


def add_findings_delimiter(parser: argparse.ArgumentParser) -> None:
    """--findings-delimiter, beside each command's --findings."""
    parser.add_argument("--findings-delimiter", choices=DELIMITERS, default=None, metavar="CHAR",
                        help="what separates the cells of a CSV report: ',' (default) or ';', which a German Excel "
                             "expects (it opens a ',' file with everything in one column)")


def check_findings(args) -> None:
    """--findings and --findings-delimiter before the run: the file can be written (check_output),
    and a delimiter is asked for a CSV report only, one that --findings names (exit code 2)."""
    from engine.errors import UsageError
    from engine.findings_report import is_workbook
    suffix = args.findings.suffix.lower() if args.findings is not None else ""
    if suffix in OTHER_SPREADSHEETS:
        raise UsageError(f"--findings {args.findings}: the report is written as an Excel workbook (.xlsx) or as CSV, "
                         f"not as {suffix} (a CSV under that name makes the spreadsheet program warn that the file is "
                         "not what its name says); name the file .xlsx or .csv")
    if args.findings_delimiter is not None and args.findings is None:
        raise UsageError(f"--findings-delimiter {args.findings_delimiter}: no report is written without --findings; "
                         "name the CSV file, --findings FILE.csv")
    if args.findings_delimiter is not None and args.findings is not None and is_workbook(args.findings):
        raise UsageError(f"--findings-delimiter {args.findings_delimiter}: --findings {args.findings} is an Excel "
                         "workbook, which has no delimiter; leave the option out, or name a .csv file")
    check_output(args.findings, "--findings")


def output_file(text: str) -> Path:
    """The argparse type of an output file's option (--out, --findings): a file name, not an empty
    text (which Path reads as the current folder) nor `-`, which is no file here: the command
    prints its summary on standard output, so neither the plan nor a report can go there."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty: give a file name")
    if text == "-":
        raise argparse.ArgumentTypeError("'-' is not standard output here (the command prints its summary there): "
                                         "give a file name")
    return Path(text)


def check_output(path: Path | None, option: str) -> None:
    """Fail before the run, not after it, when an output file cannot be written (exit code 2).
    `option` names the file in the message: `--findings`, `--out`, `the plan file`. Creates
    nothing: a missing folder is made when the file is written (engine.report.write_whole), so
    a command that stops before (a secret not set) leaves no empty folder behind."""
    from engine.errors import UsageError
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    nearest = next(p for p in (folder, *folder.parents) if p.exists())
    if not nearest.is_dir():
        raise UsageError(f"{option} {path}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: the folder {folder} is not writable" if nearest == folder else
                         f"{option} {path}: cannot create the folder {folder}: {nearest} is not writable")


def output_error(exc: OSError, path: Path, option: str, *, after: str = "", hint: str | None = None):
    """An output file that check_output let through and that could not be written after all (the
    disk is full, /dev/full, ...): a UsageError (exit code 2) naming the file and the cause on one
    line, as check_output's; `after`: what the message adds (for a run: that the run stands)."""
    from engine.errors import UsageError
    return UsageError(f"{option} {path}: cannot be written: {exc.strerror or exc}{after}", hint=hint)


@contextmanager
def writing(path: Path, option: str) -> Iterator[None]:
    """Around writing an output file: an OSError (the disk is full, /dev/full) is output_error's
    UsageError (exit code 2), not a bug."""
    try:
        yield
    except OSError as exc:
        raise output_error(exc, path, option) from None


def write_report(findings, path: Path | None, option: str, result, *, delimiter: str | None = None):
    """The findings report of a run that has been applied and recorded: None when it is written (or
    not asked for), else the UsageError to print, which says that the run itself stands as
    recorded (its status unchanged) and only the report failed. The command exits 2 then, as for
    any output file that cannot be written (README, "Exit codes"), whatever the run's own code was.
    A stop (SIGTERM, Ctrl-C) while the report is written is raised with `recorded_run`: the run's
    summary and what to say of it (engine.cli), since the run stands as recorded."""
    from engine.findings import tenant_codes
    from engine.findings_report import write_findings
    if path is None:
        return None
    try:
        write_findings(findings, path, delimiter=delimiter or ",", codes=tenant_codes(result.prepared.tenant))
    except KeyboardInterrupt as exc:     # SIGTERM or Ctrl-C while it is written (a large workbook takes a while)
        status = result.summary["status"]
        exc.recorded_run = (result.summary, (
            f"while writing {option} {path}; the run itself was applied and recorded (status {status}, exit code "
            f"{result.exit_code} without this), only the report file was not written"))
        raise
    except OSError as exc:
        status = result.summary["status"]
        return output_error(exc, path, f"tenant '{result.summary['tenant']}': {option}",
                            after=f"; the run itself was applied and recorded (status {status}, exit code "
                                  f"{result.exit_code} without this), only the report file failed",
                            hint=f"make room, or give {option} a file that can be written; the next run writes "
                                 "the report again")
    return None


def stopped_report(exc, args, tenant) -> None:
    """A plan or run that dedup policy `fail` stopped (engine.errors.DedupFailed, exit 8) found the
    persons who share an address, and the rest of the data-quality report up to the stop
    (`exc.findings`, engine.pipeline.prepare): `--findings FILE` is written with them, as the
    property manager fixes the ERP by it, and the error's hint says where the whole list is (its
    message names the first 20 groups). A report that cannot be written is named on standard
    error; the stop (exit 8) is what the command reports."""
    import sys

    from engine.errors import UsageError
    from engine.findings import tenant_codes
    from engine.findings_report import write_findings
    findings, findings_path = getattr(exc, "findings", None), args.findings
    if findings is None:
        return
    if findings_path is None:
        import shlex
        folder = "" if args.tenants_dir == "tenants" else f" --tenants-dir {shlex.quote(str(args.tenants_dir))}"
        exc.hint = (f"{exc.hint}; `idwell-sync plan {shlex.quote(str(args.tenant))}{folder} --findings FILE` writes "
                    "every person who shares an address (email_shared_failed) to the data-quality report")
        return
    try:
        with writing(findings_path, "--findings"):
            write_findings(findings, findings_path, delimiter=args.findings_delimiter or ",",
                           codes=tenant_codes(tenant))
    except UsageError as failure:
        print(f"idwell-sync {args.command}: error: {failure.message}", file=sys.stderr)
        return
    exc.hint = (f"{exc.hint}; the data-quality report {findings_path} lists every person who shares an address "
                "(email_shared_failed), with the other findings")


def with_failure(summary: dict, error) -> dict:
    """A run's summary (docs/summary.md) as --json prints it: after its report file failed
    (`error`, from write_report), the run's own fields and status, with the exit code and the
    error added as a failure's summary has them; else as it is."""
    if error is None:
        return summary
    return {**summary, "exit_code": int(error.exit_code), "error": {"message": error.message, "hint": error.hint}}
