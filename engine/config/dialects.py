"""Which database a SQLAlchemy URL names: a dialect (and driver) that SQLAlchemy can load here.

    dialect_problem(drivername)  -> None, or why SQLAlchemy cannot load `dialect[+driver]`
    url_dialect_problem(url)     -> the same for the URL as written in a tenant file
    repeated_query_problem(drivername, keys) -> None, or why the dialect cannot take a query parameter twice
    url_query_problem(url)       -> the same for the URL as written in a tenant file
    known_dialects()             -> the dialect names SQLAlchemy loads here, for "Valid dialects are"

The answer is SQLAlchemy's own: its dialect registry (`URL.get_dialect()`), which finds the
built-in dialects and those installed packages register, imports the dialect's module but not
its database driver, and connects to nothing. So `validate` needs no database, and a dialect
installed later is known without a change here. The candidates for "Did you mean" are derived
from the same registry.
"""
from __future__ import annotations

import re
from functools import lru_cache

from engine.config._text import did_you_mean
from engine.config.secrets import REFERENCE

_SCHEME = re.compile(r"([\w+]+)://")
"""The start of a URL as sqlalchemy.engine.url.make_url reads it: `dialect[+driver]://`."""

URL_FORM = "dialect+driver://user:${env:PASSWORD}@host:port/database"
"""The form of a URL, for hints: its password a reference, as a tenant file writes it (a literal
`user:password@` would be masked in every message, engine.redact)."""


def url_dialect_problem(url: str) -> str | None:
    """Why SQLAlchemy cannot load the dialect a URL as written names, or why it is no URL at all
    (no `dialect://` at its start: a file's path, `sqlite:/file`); None when it can, or when the
    URL does not name one that can be read without resolving it (a `${env:...}` reference in
    its place, or in a text without `dialect://`, which the reference may supply). Nothing is
    resolved: the references stay as they are. The URL itself is not repeated: it may hold a
    password written in the wrong place."""
    match = _SCHEME.match(url)
    if not match:
        return None if REFERENCE.search(url) else NOT_A_URL
    if REFERENCE.search(match.group(1)):
        return None
    return dialect_problem(match.group(1))


def url_query_problem(url: str) -> str | None:
    """repeated_query_problem for a URL as written in a tenant file (its references unresolved:
    a parameter written twice is twice whatever they resolve to); None when the dialect is not
    known without resolving the URL. Only the parameters' names are repeated, never their values."""
    from urllib.parse import parse_qsl
    match = _SCHEME.match(url)
    if not match or REFERENCE.search(match.group(1)) or "?" not in url:
        return None
    keys = [key for key, _ in parse_qsl(url.split("?", 1)[1], keep_blank_values=True)]
    return repeated_query_problem(match.group(1), keys)


def repeated_query_problem(drivername: str, keys: list[str]) -> str | None:
    """Why the dialect cannot take the first query parameter given more than once: SQLAlchemy's
    pyodbc dialects (mssql+pyodbc, mssql's default) build one ODBC connection string from the
    parameters, each taken once (odbc_connect twice fails inside SQLAlchemy with a TypeError;
    driver twice becomes DRIVER={('A', 'B')}). Other dialects are left to their drivers
    (PostgreSQL takes `host` more than once: servers to try). None when none is repeated."""
    repeated = next((key for key in dict.fromkeys(keys) if keys.count(key) > 1), None)
    if repeated is None or not _loads(drivername) or _driver(drivername) != "pyodbc":
        return None
    what = ("put every ODBC attribute into the one odbc_connect, separated by ';'" if repeated == "odbc_connect"
            else "remove the other")
    return (f"the query parameter '{repeated}' is given {keys.count(repeated)} times: the dialect "
            f"{drivername if '+' in drivername else drivername + '+pyodbc'} takes each parameter once; "
            f"give {repeated} once ({what})")


def _driver(drivername: str) -> str | None:
    from sqlalchemy.engine import make_url
    return getattr(make_url(f"{drivername}://").get_dialect(), "driver", None)


NOT_A_URL = (f"not a SQLAlchemy URL: it starts with dialect[+driver]:// ({URL_FORM}); an SQLite file is "
             "sqlite:///path/to/file.sqlite (a relative path starts in the directory idwell-sync runs in), "
             "sqlite:////srv/erp.sqlite an absolute one")
"""Why a URL without `dialect://` at its start cannot be opened: SQLAlchemy refuses it."""


def dialect_problem(drivername: str) -> str | None:
    """Why SQLAlchemy cannot load `dialect` or `dialect+driver` here, with a did-you-mean or
    the valid names; None when it can."""
    if _loads(drivername):
        return None
    dialect, _, driver = drivername.partition("+")
    if not _loads(dialect):
        names = known_dialects()
        hint = did_you_mean(dialect, names) or "Valid dialects are: " + ", ".join(names)
        return f"unknown database dialect '{dialect}'. {hint}"
    drivers = known_drivers(dialect)
    hint = did_you_mean(driver, drivers) or ("Valid drivers are: " + ", ".join(drivers) if drivers else "")
    return f"unknown driver '{driver}' for the database dialect '{dialect}'. {hint}".rstrip()


@lru_cache(maxsize=None)
def _loads(drivername: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        make_url(f"{drivername}://").get_dialect()
    except (ArgumentError, ImportError, AttributeError):   # NoSuchModuleError is an ArgumentError;
        return False                                        # a broken plug-in's module: an ImportError or so
    return True


@lru_cache(maxsize=1)
def known_dialects() -> list[str]:
    """The dialects SQLAlchemy loads here: its built-in ones, MariaDB (which it serves from its
    MySQL dialect), and those installed packages register."""
    from sqlalchemy.dialects import __all__ as built_in, registry
    names = {*built_in, "mariadb", *(n.split(".")[0] for n in registry.impls), *(n.split(".")[0] for n in _plugins())}
    return sorted(n for n in names if _loads(n))


def known_drivers(dialect: str) -> list[str]:
    """The drivers SQLAlchemy offers for a dialect here (whether or not the driver's own package
    is installed: that is a question for connecting), without the asyncio ones, which a sync
    run cannot use."""
    import importlib
    import types

    from sqlalchemy.engine.interfaces import Dialect
    try:
        members = vars(importlib.import_module(f"sqlalchemy.dialects.{'mysql' if dialect == 'mariadb' else dialect}"))
    except ImportError:                 # not one of SQLAlchemy's own
        members = {}
    names = {n for n, v in members.items() if n != "base" and isinstance(v, types.ModuleType)
             and isinstance(getattr(v, "dialect", None), type) and issubclass(v.dialect, Dialect)}
    names |= {n.split(".", 1)[1] for n in _plugins() if n.startswith(f"{dialect}.")}
    return sorted(n for n in names if _loads(f"{dialect}+{n}") and not _is_async(f"{dialect}+{n}"))


def _is_async(drivername: str) -> bool:
    from sqlalchemy.engine import make_url
    return bool(getattr(make_url(f"{drivername}://").get_dialect(), "is_async", False))


def _plugins() -> list[str]:
    """The names installed packages register in the entry point group sqlalchemy.dialects."""
    from importlib.metadata import entry_points
    return [e.name for e in entry_points(group="sqlalchemy.dialects")]
