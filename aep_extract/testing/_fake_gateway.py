"""The fake IMS token endpoint and the platform gateway's checks: its request rate
limit and its header checks."""

from __future__ import annotations

import math
import secrets
import threading
import time
from typing import Callable, Optional
from urllib.parse import parse_qs

from ._fake_api import Problem
from ._fake_http import FakeRequest, FakeResponse

IMS_TOKEN_PATH = "/ims/token/v3"


def _gateway_error(status: int, code: str, message: str) -> FakeResponse:
    return FakeResponse.json(status, {"error_code": code, "message": message})


def _ims_error(status: int, error: str, description: str) -> FakeResponse:
    return FakeResponse.json(status, {"error": error, "error_description": description})


def throttled(headers: dict[str, str]) -> FakeResponse:
    """A 429 in the gateway's error shape (aep-api.md §4.1), with ``headers``."""
    response = _gateway_error(429, "429001", "Too many requests")
    return FakeResponse(429, {**response.headers, **headers}, response.body)


class RateLimit:
    """The gateway's request rate limit over all clients: a token bucket.

    The bucket holds up to ``burst`` requests and refills at ``per_second``; a
    request that finds it empty is refused. Thread-safe.

    Args:
        per_second: requests per second in the long run (more than 0).
        burst: requests the bucket holds, so many may go at once after a lull;
            None for a tenth of a second's worth (at least 1).
        clock: monotonic seconds.

    Raises:
        ValueError: ``per_second`` not a positive number, or ``burst`` below 1.
    """

    def __init__(
        self,
        per_second: float,
        burst: Optional[float] = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _positive(per_second):
            raise ValueError(
                f"rate_limit must be a positive number, got {per_second!r}"
            )
        if burst is None:
            burst = max(1.0, per_second / 10)
        if not _positive(burst) or burst < 1:
            raise ValueError(f"rate_burst must be at least 1, got {burst!r}")
        self.per_second = float(per_second)
        self.burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._refilled_at = clock()
        self._refused = 0

    @property
    def refused(self) -> int:
        """Requests refused so far."""
        with self._lock:
            return self._refused

    def take(self) -> Optional[float]:
        """Take a token for one request: None if it may go, else the seconds until
        a token is back."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._refilled_at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.per_second)
            self._refilled_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return None
            self._refused += 1
            return (1 - self._tokens) / self.per_second

    def check(self) -> Optional[FakeResponse]:
        """A 429 with ``Retry-After`` (whole seconds, as HTTP has them, at least 1)
        when the request is refused, else None."""
        wait = self.take()
        if wait is None:
            return None
        return throttled({"Retry-After": str(max(1, math.ceil(wait)))})


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


class FakeGateway:
    """Issues OAuth server-to-server tokens and checks every platform call: its
    rate limit, if any, then its headers.

    Tokens are random and opaque; each lives ``token_ttl`` seconds (monotonic clock)
    or until :meth:`expire_tokens`.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        org_id: str,
        sandbox: str,
        token_ttl: int,
        rate_limit: Optional[RateLimit] = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_id = org_id
        self.sandbox = sandbox
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._issued = 0

    @property
    def tokens_issued(self) -> int:
        """Number of tokens issued so far."""
        with self._lock:
            return self._issued

    def issue_token(self) -> str:
        """A new valid token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
            self._issued += 1
        return token

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        with self._lock:
            self._tokens.clear()

    def token_valid(self, token: str) -> bool:
        """Whether a token was issued and is neither expired nor revoked."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def token_endpoint(self, request: FakeRequest) -> FakeResponse:
        """``POST /ims/token/v3``: form body (or query string) of client credentials."""
        if request.method != "POST":
            return _ims_error(405, "invalid_request", "method not allowed")
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {**request.query, **{key: values[-1] for key, values in form.items()}}
        grant_type = params.get("grant_type")
        if not grant_type:
            return _ims_error(400, "invalid_request", "missing grant_type parameter")
        if grant_type != "client_credentials":
            return _ims_error(400, "unsupported_grant_type", "invalid grant_type")
        if not params.get("client_id"):
            return _ims_error(400, "invalid_request", "missing client_id parameter")
        if params["client_id"] != self.client_id:
            return _ims_error(400, "invalid_client", "invalid client_id parameter")
        if params.get("client_secret") != self.client_secret:
            return _ims_error(401, "invalid_client", "invalid client_secret parameter")
        if not params.get("scope"):
            return _ims_error(400, "invalid_scope", "missing scope parameter")
        body = {
            "access_token": self.issue_token(),
            "token_type": "bearer",
            "expires_in": self.token_ttl,
        }
        return FakeResponse.json(200, body)

    def check(self, request: FakeRequest) -> Optional[FakeResponse]:
        """The gateway's rate limit and header checks (aep-api.md §4.1): an error,
        or None."""
        if self.rate_limit is not None:
            refused = self.rate_limit.check()
            if refused is not None:
                return refused
        headers = request.headers
        authorization = headers.get("Authorization", "").strip()
        if not authorization:
            return _gateway_error(403, "403010", "Oauth token is missing")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self.token_valid(token.strip()):
            return _gateway_error(401, "401013", "Oauth token is not valid")
        api_key = headers.get("x-api-key")
        if not api_key:
            return _gateway_error(403, "403000", "Api Key is required")
        if api_key != self.client_id:
            return _gateway_error(403, "403003", "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id")
        if not org:
            return _gateway_error(400, "400003", "Missing header x-gw-ims-org-id")
        if org != self.org_id:
            return _gateway_error(403, "403025", "Profile is not valid")
        sandbox = headers.get("x-sandbox-name")
        if sandbox != self.sandbox:
            detail = f"Sandbox {sandbox!r} does not exist or is not accessible"
            return Problem(403, detail).response("SBX", sandbox or "")
        return None
