"""Secrets by reference: `${env:NAME}` and `${file:PATH}`.

A `Secret` holds the text as written in the tenant file (references, never values). It prints
as that text, so it is safe in logs, plans and exceptions; `resolve()` returns the real value and
is called only at the moment a connection is made. Every value it resolves is made known to
engine.redact, which masks it in whatever text it turns up in later (a driver's message, a
library's log, an echoed request), in any encoding.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from engine.redact import remember

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
SECRET_FIELDS = frozenset({"password", "key", "token", "client_secret", "url"})
"""The fields of `source`, `source.auth` and `target` whose references are resolved (with the
tenant's `state_url`): anywhere else a reference would be used as written."""
_ODBC_VALUE_BEFORE = re.compile(r"(?i)[?&]odbc_connect=[^&]*(?:=|%3D)$")
_ODBC_VALUE_AFTER = re.compile(r"(?i)(?:;|%3B|&|$)")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")   # visible ASCII: what a token or key in a header may hold


class SecretError(Exception):
    """A reference cannot be resolved, or its value cannot be used. The message names the
    reference, never a value; `hint` says what to do where the general advice does not fit."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


MISSING_SECRET_HINT = ("set the environment variable or create the file the tenant references, on the sync server",
                       "die referenzierte Umgebungsvariable bzw. Datei auf dem Sync-Server bereitstellen")
"""What to do about a reference that cannot be resolved (English, German)."""


@dataclass(frozen=True)
class Secret:
    template: str            # e.g. "${env:ACME_SQL_PASSWORD}" or "mssql://u:${env:PW}@host/db"
    base_dir: Path | None = None  # relative ${file:...} paths resolve against this directory

    @property
    def references(self) -> list[str]:
        return [m.group(0) for m in REFERENCE.finditer(self.template)]

    def resolve_url(self) -> str:
        """The value for a URL template: references inside a longer text (the password in
        `postgresql://user:${env:PW}@host/db`) are percent-encoded, so that `@ / : # ?` in a
        password cannot change the URL's meaning; a template that is one reference is the URL.
        A reference that is a whole attribute value of an `odbc_connect` connection string
        (`...;PWD=${env:PW};...`, its `=` and `;` as they are or percent-encoded) is also braced
        for ODBC (`{...}`, a `}` doubled) first, so that `;` or `}` in a password cannot end it."""
        if REFERENCE.fullmatch(self.template.strip()):
            return self.resolve()

        def encode(value: str, m: re.Match[str]) -> str:
            before, after = m.string[:m.start()], m.string[m.end():]
            if _ODBC_VALUE_BEFORE.search(before) and _ODBC_VALUE_AFTER.match(after):
                value = "{" + value.replace("}", "}}") + "}"
            return quote(value, safe="")
        return self._substitute(encode)

    def resolve(self) -> str:
        return self._substitute(lambda value, _: value)

    def resolve_header(self) -> str:
        """The value for an HTTP header (a token, an API key), without surrounding whitespace.
        HTTP libraries refuse a value with a line break or a non-ASCII character (a key file's
        second line, a byte order mark) and quote the value in their message: here it is a
        SecretError that names the reference instead."""
        value = self.resolve().strip()
        if not value:
            raise SecretError(f"{self} is empty")
        if not _HEADER_SAFE.fullmatch(value):
            raise SecretError(f"{self} cannot be sent in an HTTP header: it holds spaces, line breaks or "
                              "non-ASCII characters", hint="store only the token or key itself in the secret")
        return value

    def _substitute(self, encode) -> str:
        def one(m: re.Match[str]) -> str:
            value = self._value(m.group(1), m.group(2).strip(), m.group(0))
            remember(value)                     # masked wherever it turns up from now on
            return encode(value, m)
        return REFERENCE.sub(one, self.template)

    def _value(self, kind: str, name: str, reference: str) -> str:
        if kind == "env":
            if name not in os.environ:
                raise SecretError(f"environment variable {name} is not set (referenced as {reference})")
            return os.environ[name]
        path = Path(name).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path} (referenced as {reference}): {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret file {path} (referenced as {reference}) is not UTF-8 text",
                              hint="write the secret into the file as UTF-8 text (e.g. with printf '%s' ... > file)") \
                from None

    def __str__(self) -> str:
        return self.template

    def __repr__(self) -> str:
        return f"Secret({self.template!r})"


def tenant_secrets(tenant, *, target: bool = True) -> list[tuple[str, Secret]]:
    """(where, secret) for every secret of the tenant's source and (with `target`) its target."""
    out: list[tuple[str, Secret]] = []
    src = tenant.source
    if src.type == "sql":
        if src.url is not None:
            out.append(("source.url", src.url))
        if src.server is not None:
            out.append(("source.password", src.server.password))
    else:
        for attr in ("key", "token", "client_secret"):
            if getattr(src.auth, attr) is not None:
                out.append((f"source.auth.{attr}", getattr(src.auth, attr)))
    if target and isinstance(getattr(tenant.target, "token", None), Secret):
        out.append(("target.token", tenant.target.token))
    return out


def unresolved(secrets: list[tuple[str, Secret]]) -> list[tuple[str, str | None]]:
    """(`where: why`, what to do) for each reference of `secrets` that cannot be resolved (every
    one, not only the first: an operator then sets them all at once), the hint the SecretError
    has (a file that is not UTF-8 text) or None. Names references, never values."""
    problems = []
    for where, secret in secrets:
        for reference in secret.references:
            try:
                Secret(reference, secret.base_dir).resolve()
            except SecretError as exc:
                problems.append((f"{where}: {exc}", exc.hint))
    return problems


def unresolved_error(tenant_id: str, problems: list[tuple[str, str | None]]):
    """The SecretReferenceError (exit 3) that names every reference in `problems`, with what to do
    about each kind of problem once (the general advice for a variable or file that is missing)."""
    from engine.errors import SecretReferenceError
    hints = list(dict.fromkeys(hint or MISSING_SECRET_HINT[0] for _, hint in problems))
    texts = [text for text, _ in problems]
    if len(texts) == 1:
        return SecretReferenceError(f"tenant '{tenant_id}': {texts[0]}", hint=hints[0])
    return SecretReferenceError(f"tenant '{tenant_id}': {len(texts)} secret references cannot be resolved: "
                                + "; ".join(texts), hint="; ".join(hints))
