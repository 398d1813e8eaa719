"""Secret values out of everything idwell-sync says: the one place that masks them.

A secret's value reaches text the engine does not write itself: a driver's or an HTTP library's
error message, a library's debug log at -vv, a gateway's answer that echoes the request, a URL
as SQLAlchemy renders it. There it is rarely written as it is: percent-encoded in a URL (`%40`
or `+`, depending on who encodes), brace-escaped in an ODBC connection string (`}` as `}}`),
escaped in a repr or in JSON, or twice where a message quotes a message.

  remember(value)  is called by `Secret` for every value it resolves (and by the API source for
                   an OAuth token it is given): the value is known in each of these forms;
  redact(text)     replaces every known form by ***, and also what has the shape of a password
                   whatever its origin: a URL's `user:password@` and `password=`, `pwd=`,
                   `token=`, ... parameters of a URL's query or an ODBC connection string (a
                   store's URL in $IDWELL_STATE_URL is never resolved from a reference).

It is applied where text leaves the engine's hands: every SyncError's message and hint (the
error on standard error, the --json summary, the run history, doctor), every log line (engine.cli,
any logger, any verbosity), the traceback of an internal error, the portal's messages about
refused records (the findings), the names of state stores, and the driver messages doctor shows.
Values shorter than MIN_LENGTH characters are not masked as text (they would mask common words);
the shapes above still are.
"""
from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
MIN_LENGTH = 4

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?!\$\{(?:env|file):[^}]*\}@)([^\s/]+)@"
                           r"(?=[^@/?#\s]*(?:[/?#\s]|$))")
"""`user:password@` of a URL, up to the authority's last `@`: a password written with a raw `@` in
it (not percent-encoded) is masked whole; a reference there (`${env:NAME}`, a tenant file's URL
as written) is no secret and stays, so that a message says which variable to set."""
SECRET_PARAMETERS = ("pwd", "password", "passwd", "token", "access_token", "apikey", "api_key", "secret",
                     "client_secret")
_PARAMETER = re.compile(rf"(?i)\b({'|'.join(SECRET_PARAMETERS)})=" r"(\{(?:[^}]|\}\})*\}|\*\*\*|[^;\s]+)")
"""`key=value` in a URL's query or an ODBC connection string: a value in braces whole (ODBC), one
masked already (MASK) alone, else up to the next `;` or space (an unbraced ODBC value may hold `&`
and quotes; in a URL the rest of its query goes with it, unless masked first: shown_url)."""


def forms(value: str) -> set[str]:
    """The ways `value` is written in text: as it is; percent-encoded (as `Secret.resolve_url`
    writes it, with `+` for a space as SQLAlchemy renders a query, with `/` kept as in a path);
    brace-escaped (ODBC); escaped in JSON and in the repr of a str or of its UTF-8 bytes; and
    each of these escaped again by a repr (a message that quotes a message)."""
    once = {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value), value.replace("}", "}}"),
            json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
            repr(value.encode("utf-8", "surrogateescape"))[2:-1]}
    return once | {repr(text)[1:-1] for text in once}


def remember(value: str) -> None:
    """Know `value` as a secret from now on, in this process (and in processes forked from it)."""
    global _pattern
    if not isinstance(value, str):
        return
    new = {f for f in forms(value) if len(f) >= MIN_LENGTH} - _known
    url_password = urlsplit(value).password if "://" in value else None
    with _lock:
        _known.update(new)
        if new:
            _pattern = None
    if url_password:                   # a reference that holds a whole URL: its password alone too
        remember(unquote(url_password))


def redact(text: str) -> str:
    """`text` with every known secret and every password-shaped part masked."""
    global _pattern
    if not text:
        return text
    pattern = _pattern
    if pattern is None and _known:
        with _lock:
            longest_first = sorted(_known, key=len, reverse=True)
            pattern = _pattern = re.compile("|".join(map(re.escape, longest_first)))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _PARAMETER.sub(lambda m: f"{m.group(1)}={MASK}", text)


def shown_url(url) -> str:
    """A SQLAlchemy URL as messages show it: without its password, its secret query parameters
    masked one by one (the rest of the query still shown), then redact()ed."""
    url = url.update_query_dict({k: MASK for k in url.query if k.lower() in SECRET_PARAMETERS})
    return redact(url.render_as_string(hide_password=True).replace(f"={quote(MASK, safe='')}", f"={MASK}"))
