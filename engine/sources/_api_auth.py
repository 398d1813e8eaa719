"""The API source's credentials on each request: an API key header, a bearer token, or an OAuth2
token (client credentials) fetched, kept for its lifetime and replaced (Auth)."""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import httpx

from engine.config.model import ApiSource
from engine.config.secrets import SecretError
from engine.errors import SecretReferenceError, SourceError
from engine.plural import counted
from engine.redact import remember
from engine.sources._api_requests import RETRY_STATUS, post_token, retries_hint

log = logging.getLogger("engine.sources.api")     # the API source's log, under the name its lines have always had
TOKEN_MARGIN = 30.0          # seconds: an OAuth token is replaced this long before it ends, at most ...
TOKEN_MARGIN_SHARE = 0.25    # ... and at most this share of its lifetime (expires_in 20: used for 15 s)
TOKEN_LIFETIME = 3600.0      # seconds, for a token whose expires_in is missing or unusable


class Auth(httpx.Auth):
    """API key header, bearer token, or OAuth2 client credentials (token fetched and refreshed).
    `retry(reason, seconds)` waits before a token request is sent again, and counts it.

    An OAuth token is used until shortly before it ends: `expires_in` seconds after its request
    was sent, less the smaller of TOKEN_MARGIN and a quarter of that lifetime, so that a token
    that lives 20 s is used for 15 s, one that lives an hour for 59.5 min. A token whose
    expires_in is missing or null is used for TOKEN_LIFETIME (RFC 6749 leaves its lifetime to the
    server's documentation); so is one whose expires_in is not a number of seconds above 0
    (`"soon"`, 0, -5, true), with a warning: fetching a token for every request because of it
    would flood the login service. A numeric string ("20") is a number. Whatever the lifetime,
    an API that refuses the token (401) gets a new one, once per request."""

    def __init__(self, source: ApiSource, tenant_id: str, retry: Callable[[str, float], None]):
        self.source, self.tenant_id, self._retry = source, tenant_id, retry
        self._token: str | None = None
        self._expires = 0.0
        self._warned = False

    def _secret(self, secret, *, header: bool = False) -> str:
        try:
            return secret.resolve_header() if header else secret.resolve()
        except SecretError as exc:
            raise SecretReferenceError(f"tenant '{self.tenant_id}': source auth: {exc}", hint=exc.hint) from None

    def _oauth_token(self, force: bool = False) -> str:
        if force or self._token is None or time.monotonic() >= self._expires:
            a = self.source.auth
            data = {"grant_type": "client_credentials", "client_id": a.client_id,
                    "client_secret": self._secret(a.client_secret)}
            if a.scope:
                data["scope"] = a.scope
            r, attempt, sent = post_token(a.token_url, data, timeout=self.source.timeout, tenant_id=self.tenant_id,
                                          source=self.source, retry=self._retry)
            if r.status_code in RETRY_STATUS or r.status_code >= 500:
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered "
                                  f"{r.status_code} after {counted(attempt, 'attempt')}", cause="unknown", retriable=True,
                                  hint="the API's login service is failing on its side: the next run tries again; "
                                       "if it goes on, ask the vendor" + (retries_hint(self.source.max_retries)
                                                                          if r.status_code in RETRY_STATUS else ""))
            if r.status_code != 200:
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered "
                                  f"{r.status_code}", cause="login_failed",
                                  hint=f"check client_id and the secret {a.client_secret}")
            try:
                body = r.json()
                token, expires_in = body["access_token"], body.get("expires_in")
                if not isinstance(token, str) or not token:
                    raise TypeError
            except (ValueError, TypeError, KeyError, AttributeError):
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered 200 "
                                  f"with {r.headers.get('content-type', 'no content type')} but no OAuth token "
                                  "(a JSON object with access_token and expires_in)", cause="login_failed",
                                  hint="check auth.token_url: is it the API's OAuth token endpoint, not a login "
                                       "page or proxy?") from None
            self._token = token
            remember(self._token)           # a secret too, for as long as it is valid
            lifetime = _lifetime(expires_in)
            if lifetime is None:
                if expires_in is not None and not self._warned:
                    self._warned = True
                    log.warning("tenant '%s': the token endpoint %s gave its token an expires_in of %s, not a "
                                "number of seconds above 0: the token is used for up to %d minutes, and replaced "
                                "sooner if the API refuses it", self.tenant_id, a.token_url,
                                json.dumps(expires_in)[:40], TOKEN_LIFETIME // 60)
                lifetime = TOKEN_LIFETIME
            self._expires = sent + lifetime - min(TOKEN_MARGIN, lifetime * TOKEN_MARGIN_SHARE)
        return self._token

    def auth_flow(self, request: httpx.Request):
        a = self.source.auth
        if a.type == "api_key":
            request.headers[a.header] = self._secret(a.key, header=True)
        elif a.type == "bearer":
            request.headers["Authorization"] = f"Bearer {self._secret(a.token, header=True)}"
        else:
            request.headers["Authorization"] = f"Bearer {self._oauth_token()}"
        response = yield request
        if response.status_code == 401 and a.type == "oauth2_client_credentials":
            request.headers["Authorization"] = f"Bearer {self._oauth_token(force=True)}"
            yield request


def _lifetime(expires_in: Any) -> float | None:
    """A token's lifetime in seconds from its expires_in (a number, or a numeric string), if it is
    one above 0 and finite; else None."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float, str)):
        return None
    try:
        seconds = float(expires_in)
    except (ValueError, OverflowError):
        return None
    return seconds if 0 < seconds < float("inf") else None
