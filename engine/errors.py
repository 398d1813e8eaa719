"""Errors the engine raises, sorted by what the caller should do, and the CLI's exit codes.

Every error is one of three kinds (singer-sdk's split):
  fatal:     stop the run; a person must change something (config, credentials, firewall).
  retriable: a transient failure; the operation is retried with backoff, and the next night
             run tries again.
  skippable: one record cannot be processed; it is reported as a finding and the run goes on.
Only fatal errors reach the CLI's top-level handler, which maps them to the exit codes below.
Messages never contain secret values: they name references such as ${env:NAME} instead, and
what a message quotes (a driver's text, a server's answer) passes engine.redact.
"""
from __future__ import annotations

from enum import IntEnum

from engine.plural import counted
from engine.redact import redact


class ExitCode(IntEnum):
    """Stable exit codes of the idwell-sync command (documented in README.md)."""
    OK = 0
    INVALID = 1            # validate: invalid files; doctor: a step failed; status: a tenant needs attention
    USAGE = 2              # wrong command-line usage
    CONFIG = 3             # the tenant file is invalid or a secret reference cannot be resolved
    SOURCE = 4             # the ERP cannot be reached or read (connection, login, query)
    TARGET = 5             # the portal cannot be reached or refused the credentials (401/403)
    DELETES_HELD = 6       # the run applied creates/updates but held back deletes (deletion guard)
    LOCKED = 7             # another run of this tenant is in progress
    DEDUP_FAILED = 8       # dedup policy `fail` found shared e-mails; nothing was written
    REJECTED = 9           # the run finished, but the target refused some records
    STATE = 10             # the state store cannot be opened or written
    INTERNAL = 70          # a bug: please report it with the traceback
    OUTPUT_CLOSED = 141    # the program reading the output stopped (`| head`), as a shell shows SIGPIPE


class SyncError(Exception):
    """Base of all errors the engine raises on purpose. Fatal unless a subclass says otherwise."""
    exit_code: ExitCode = ExitCode.INTERNAL
    retriable: bool = False

    def __init__(self, message: str, *, hint: str | None = None):
        message, hint = redact(message), hint and redact(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  what to do: {self.hint}"


def failure_message(exc: BaseException) -> str:
    """Why a run failed, on one line, for its row in the run history: a SyncError's message
    (secret-free, as every message here); for a bug only the exception's type (its text may
    hold anything; the traceback is on standard error)."""
    from engine._stop import Terminated
    if isinstance(exc, Terminated):
        return "stopped (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SyncError):
        return "; ".join(line.strip() for line in exc.message.splitlines() if line.strip())
    return f"internal error (a bug): {type(exc).__name__}; the traceback is on the run's standard error"


class ConfigError(SyncError):
    """The tenant or mapping file is invalid. Carries every problem found, best first."""
    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list, message: str | None = None, *, hint: str | None = None):
        self.problems = list(problems)
        first = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        text = message or (first + (f"\n... and {counted(more, 'more error')}" if more > 0 else ""))
        super().__init__(text, hint=hint)


class ExpressionError(ConfigError):
    """An expression of the tenant's mapping cannot be computed for a record of the ERP: a jmespath
    built-in given a value it does not take (`join` over a null, `starts_with` of a null). The
    run stops before anything is written: a record left out would be archived in the portal."""

    def __init__(self, entity: str, key: str, what: str, expression: str, error: BaseException):
        where = what if what.startswith("filter ") else f"field '{what}'"
        super().__init__([], f"{entity} {key}: the {where} cannot be computed for this ERP record: "
                             f"{expression} gives {type(error).__name__}: {error}", hint=EXPRESSION_HINT)
        self.entity, self.key, self.what, self.expression = entity, key, what, expression

    def for_tenant(self, tenant_id: str) -> ConfigError:
        return ConfigError([], f"tenant '{tenant_id}': {self.message}", hint=self.hint)


EXPRESSION_HINT = ("correct the expression in the tenant's overrides or the mapping: jmespath's own functions refuse "
                   "a null or a number where they expect text (join, starts_with, contains, length, ...); the engine's "
                   "functions give null instead (concat for join, to_text for to_string), and [a, b][?@] drops nulls "
                   "from a list (docs/functions.md)")


class SecretReferenceError(SyncError):
    """A secret the tenant references cannot be resolved on this machine."""
    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, *, hint: str | None = None):
        from engine.config.secrets import MISSING_SECRET_HINT
        super().__init__(message, hint=hint or MISSING_SECRET_HINT[0])


class SourceError(SyncError):
    """The ERP could not be reached or read. `cause` is a classified reason (see engine.classify)."""
    exit_code = ExitCode.SOURCE

    def __init__(self, message: str, *, cause: str = "unknown", hint: str | None = None, retriable: bool = False,
                 in_query: bool = False):
        super().__init__(message, hint=hint)
        self.cause = cause
        self.retriable = retriable
        self.in_query = in_query    # raised by a query over an open connection (not by connecting)


class TargetError(SyncError):
    """The portal could not be reached, or refused the credentials."""
    exit_code = ExitCode.TARGET

    def __init__(self, message: str, *, hint: str | None = None, retriable: bool = False):
        super().__init__(message, hint=hint)
        self.retriable = retriable


class UsageError(SyncError):
    """A command-line argument cannot be used (e.g. an output path that cannot be written)."""
    exit_code = ExitCode.USAGE


class StateError(SyncError):
    """The state store (run history, winners, last written records, locks) cannot be used."""
    exit_code = ExitCode.STATE


class LockedError(SyncError):
    exit_code = ExitCode.LOCKED


class DedupFailed(SyncError):
    exit_code = ExitCode.DEDUP_FAILED
