"""Retry-After as both HTTP clients read it: the API source (engine.sources._api_requests) and
the import API target (engine.targets._http_client) follow one rule.

  * A request answered 429 or 500/502/503/504 is sent again after the longer of the client's
    backoff and the answer's Retry-After: never sooner than the server asked, and never at once
    after a failure (a failing server that says `Retry-After: 0` is not hammered).
  * Retry-After is delta-seconds or an HTTP-date (RFC 9110, all three of its forms; a date that
    names no zone is GMT, as HTTP-dates are). A value that is neither (or `nan`) counts as
    absent; one in the past as 0.
  * A Retry-After longer than RETRY_AFTER_MAX is not waited for, nor cut short: coming back
    sooner than the server asked is refused again (a 429 may even prolong the throttle), and a
    night run that waits longer for one answer holds its tenant's window. The request is given up
    at once with an error that names the server's wait (`asked`); the next run tries again.

With at most RETRY_AFTER_MAX per wait, a request's retries wait at most its retries times
RETRY_AFTER_MAX (the source's and the target's `max_retries`, engine.backoff.RETRIES = 6 by default).
"""
from __future__ import annotations

import datetime as dt
import email.utils
import math
import time
from typing import Callable

import httpx

RETRY_AFTER_MAX = 300.0     # seconds: the longest Retry-After a run waits for


def retry_after(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """The seconds the answer's Retry-After asks for (0 or more, not capped); None if it has none
    or one that is neither delta-seconds nor an HTTP-date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:             # asctime's form, or -0000: HTTP-dates are GMT
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)


def too_long(seconds: float | None) -> bool:
    """A Retry-After beyond what a run waits for (see the module's docstring)."""
    return seconds is not None and seconds > RETRY_AFTER_MAX


def asked(response: httpx.Response, seconds: float) -> str:
    """How the server's wait is named in an error: `to wait 3600 s (Retry-After: 3600)`, a date
    as the server wrote it; an endless one as such."""
    shown = response.headers.get("retry-after", "").strip()[:40]
    wait = f"{seconds:.0f} s" if math.isfinite(seconds) else "without end"
    return f"to wait {wait} (Retry-After: {shown})"


def wait_for(after: float | None, backoff: float) -> float:
    """The wait before a retry: the longer of the backoff and the Retry-After (if any)."""
    return backoff if after is None else max(after, backoff)
