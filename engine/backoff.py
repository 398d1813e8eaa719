"""How often, and after how long, both HTTP clients send a request again: the API source
(engine.sources._api_requests, the ERP vendor's API and its token endpoint) and the import API
target (engine.targets._http_client, the portal). They retry the same transient failures (429,
500/502/503/504, no answer, a dropped connection, a body that cannot be decoded or is cut off on
its way) by one rule; the servers differ, but nothing in that calls for other numbers: a server
that limits requests or is down for a while says how long with Retry-After, which both wait for
when it is longer than the backoff (engine.retry_after).

  * RETRIES: a request is sent again at most 6 times, 7 attempts in all: the default of the
    tenant's `source.max_retries` (an API source: a page has its attempts in all, whatever made
    it ask again; a token request too) and of its `target.max_retries`.
  * backoff(retried): the wait before the next attempt, after `retried` earlier retries: 0.25 s
    doubling (BACKOFF_BASE * 2^retried), at most BACKOFF_MAX (30 s), half of it fixed and half
    random, so that requests that failed together do not come back together: 0.125-0.25 s
    before the first retry, 0.25-0.5 s, 0.5-1 s, ..., 4-8 s before the sixth.
"""
from __future__ import annotations

import random

RETRIES = 6                 # times a request is sent again after the first attempt
BACKOFF_BASE = 0.25         # seconds before the first retry (before jitter)
BACKOFF_MAX = 30.0          # the longest backoff between two attempts


def backoff(retried: int, rng: random.Random | None = None, base: float = BACKOFF_BASE,
            cap: float = BACKOFF_MAX) -> float:
    """The wait before the next attempt after `retried` retries (0 before the first retry):
    exponential with jitter, half of min(cap, base * 2^retried) fixed, half random."""
    ceiling = min(cap, base * (2 ** retried))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
