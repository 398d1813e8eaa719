"""What the config checks need to know about a source query, parsed as T-SQL with sqlglot.

    check_read_only(query)  -> None, or why the query is refused (the sync never writes the ERP)
    select_columns(query)   -> the names of the query's output columns, None if `*` hides them
    bound_names(query)      -> the parameters the query binds (`:name`), each with its first offset
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

DIALECT = "tsql"

BIND = re.compile(r"(?<![:\w]):(\w+)")
"""A bound parameter as the run binds it (SQLAlchemy's text() reads `:name` so too, also inside a
string literal or a comment); `::` (a PostgreSQL cast) is none."""

RUN_PARAMS = ("ref_date", "window_end_from", "window_start_until")
"""The parameters every run binds itself (engine.extract.window_params): the contract window's
reference date, the earliest end and the latest start of a contract inside it."""

# statements and clauses that write, change the schema or run code
_FORBIDDEN: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "INSERT"), (exp.Update, "UPDATE"), (exp.Delete, "DELETE"), (exp.Merge, "MERGE"),
    (exp.TruncateTable, "TRUNCATE"), (exp.Create, "CREATE"), (exp.Drop, "DROP"), (exp.Alter, "ALTER"),
    (exp.Execute, "EXEC"), (exp.Grant, "GRANT"), (exp.Revoke, "REVOKE"), (exp.Into, "SELECT ... INTO"),
    (exp.Command, "a statement sqlglot cannot read as SELECT"),
)


@dataclass(frozen=True)
class SqlIssue:
    message: str
    line: int | None = None   # 1-based, within the query text
    col: int | None = None    # 1-based


def _parse(query: str) -> list[exp.Expression]:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # sqlglot warns when it falls back to a raw Command
    try:
        return [s for s in sqlglot.parse(query, read=DIALECT) if s is not None]
    finally:
        logger.setLevel(level)


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper() or "an unknown statement"
    for cls, name in _FORBIDDEN:
        if isinstance(node, cls):
            return name
    return node.key.upper()


_WRITING_TOKENS = {"INSERT": "INSERT", "UPDATE": "UPDATE", "DELETE": "DELETE", "MERGE": "MERGE",
                   "EXECUTE": "EXEC", "EXEC": "EXEC", "DROP": "DROP", "CREATE": "CREATE", "ALTER": "ALTER",
                   "TRUNCATE": "TRUNCATE", "GRANT": "GRANT", "REVOKE": "REVOKE"}


def _writing_keyword(query: str) -> str | None:
    """The first keyword of a writing statement in `query`, found by its tokens (not its text,
    so a column named DeleteFlag or a string 'update' does not count)."""
    try:
        tokens = sqlglot.tokenize(query, read=DIALECT)
    except TokenError:
        return None
    for token in tokens:
        name = token.token_type.name
        if name in _WRITING_TOKENS or (name in ("VAR", "COMMAND") and token.text.upper() in ("EXEC", "EXECUTE")):
            return _WRITING_TOKENS.get(name, "EXEC")
    return None


def find_issue(query: str) -> SqlIssue | None:
    """The first reason `query` is not one read-only SELECT, with its position where known."""
    try:
        statements = _parse(query)
    except ParseError as exc:
        writing = _writing_keyword(query)
        if writing:  # refusing a write matters more than the syntax error that hid it
            return SqlIssue(f"the query contains {writing}: only a reading SELECT is allowed")
        first = exc.errors[0] if exc.errors else {}
        highlight = first.get("highlight") or ""
        near = f" near '{highlight}'" if highlight else ""
        what = str(first.get("description", "cannot parse")).lower()
        col = first.get("col")
        if col and highlight and "\n" not in highlight:
            col = max(col - len(highlight) + 1, 1)  # sqlglot points at the token's last character
        return SqlIssue(f"the query is not valid T-SQL: {what}{near}", first.get("line"), col)
    except TokenError:
        return SqlIssue("the query is not valid T-SQL: it cannot be split into tokens (is a quote or bracket not closed?)")
    if not statements:
        return SqlIssue("the query is empty: write one SELECT")
    if len(statements) > 1:
        kinds = ", ".join(_kind(s) for s in statements)
        return SqlIssue(f"the query holds {len(statements)} statements ({kinds}); write exactly one SELECT, "
                        "without ';' between statements")
    statement = statements[0]
    while isinstance(statement, exp.Subquery):
        statement = statement.this
    if not isinstance(statement, (exp.Select, exp.SetOperation)):
        return SqlIssue(f"the query must be a SELECT (or WITH ... SELECT), not {_kind(statement)}: "
                        "the sync only reads from the ERP")
    for node in statement.walk():
        for cls, name in _FORBIDDEN:
            if isinstance(node, cls):
                where = " inside a WITH clause" if node.find_ancestor(exp.CTE) else ""
                if cls is exp.Into:
                    return SqlIssue("the query uses SELECT ... INTO, which creates a table: "
                                    "the sync only reads from the ERP")
                return SqlIssue(f"the query contains {name}{where}: only a reading SELECT is allowed")
    return None


def check_read_only(query: str) -> str | None:
    """None if `query` is one read-only SELECT or WITH ... SELECT; otherwise why not."""
    issue = find_issue(query)
    return issue.message if issue else None


def select_columns(query: str) -> list[str] | None:
    """The output column names of a SELECT, in order; None when `*` makes them unknowable.

    Unnamed expressions (`a + 1` without AS) have no name a mapping could use and are left out.
    Raises ValueError if the query cannot be parsed.
    """
    try:
        statements = _parse(query)
    except (ParseError, TokenError) as exc:
        raise ValueError(f"cannot parse the query: {exc}") from None
    if len(statements) != 1:
        raise ValueError("expected one statement")
    statement = statements[0]
    # UNION and friends: the first SELECT names the columns; (SELECT ...): the inner one
    while isinstance(statement, (exp.SetOperation, exp.Subquery)):
        statement = statement.this if isinstance(statement, exp.Subquery) else statement.left
    if not isinstance(statement, exp.Select):
        raise ValueError("not a SELECT")
    names: list[str] = []
    for item in statement.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            return None
        if isinstance(item, exp.Alias):
            names.append(item.alias)
        elif isinstance(item, exp.Column):
            names.append(item.name)
    return names


def bound_names(query: str) -> dict[str, int]:
    """The names the query binds (`:mandant` -> 'mandant'), in order, each with the offset of its
    first `:`."""
    found: dict[str, int] = {}
    for match in BIND.finditer(query):
        found.setdefault(match.group(1), match.start())
    return found
