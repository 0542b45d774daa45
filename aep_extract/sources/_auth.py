"""OAuth Server-to-Server access tokens from Adobe IMS, cached and shared by threads."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from .._retry import build_retrying
from ..errors import AuthError, InvalidResponse, SourceError, TokenUnavailable
from ._bodies import MAX_JSON_BYTES, parse_json, read_bounded
from ._http_errors import Redactor, check_response, describe, error_text
from ._transport import Origin, Transport

if TYPE_CHECKING:
    import tenacity

    from ..config import AepConfig

__all__ = ["ImsTokenProvider"]

logger = logging.getLogger(__name__)

TOKEN_PATH = "/ims/token/v3"


class ImsTokenProvider:
    """Fetches, caches and refreshes one IMS access token (client credentials grant).

    The token is replaced ``config.token_refresh_margin`` seconds before it expires
    (at most half its lifetime early, so a short-lived token is still reused), or
    after :meth:`invalidate`. A lock makes concurrent callers wait for one fetch.

    A fetch retries failures a retry can fix (network, 429, 5xx) under the retry
    policy, all within ``config.token_timeout`` seconds in total; then it raises
    :class:`~aep_extract.errors.TokenUnavailable`, and so do the callers that were
    waiting for that fetch, at once. The request is never redirected (a 3xx would
    POST the secret again elsewhere) and goes only to ``config.ims_url``'s origin.

    Args:
        config: IMS URL, client id, secret and scopes; timeouts and TLS verification.
        transport: how requests are sent.
        clock: monotonic seconds of the token's expiry (injectable for tests).
        sleep: how retries wait (injectable for tests).
        redact: blanks secrets out of error texts; it also learns every token
            issued. Default: one that knows the client secret.
        on_retry: called before each wait between two tries of a fetch.
    """

    def __init__(
        self,
        config: AepConfig,
        transport: Transport,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], None] = time.sleep,
        redact: Optional[Redactor] = None,
        on_retry: Optional[Callable[[tenacity.RetryCallState], None]] = None,
    ) -> None:
        self._config = config
        self._on_retry = on_retry
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._redact = redact if redact is not None else Redactor(config.client_secret)
        self._url = config.ims_url.rstrip("/") + TOKEN_PATH
        self._origin = Origin.of(self._url)
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._refresh_at = 0.0
        self._failure: Optional[tuple[float, SourceError]] = None

    def token(self) -> str:
        """A valid access token, fetched only when none is cached or it is due.

        Raises:
            AuthError: IMS refused the credentials (HTTP 400, 401 or 403).
            TokenUnavailable: no token within ``config.token_timeout`` seconds.
        """
        asked = time.monotonic()
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            if self._failure is not None and self._failure[0] >= asked:
                # The fetch we waited for has just failed: do not try again at once.
                raise _again(self._failure[1])
            self._token = None
            started = self._clock()
            try:
                token, lifetime = self._fetch()
            except (AuthError, TokenUnavailable) as exc:
                self._failure = (time.monotonic(), exc)
                raise
            self._failure = None
            self._redact.add_token(token)
            margin = min(self._config.token_refresh_margin, lifetime / 2)
            self._token, self._refresh_at = token, started + lifetime - margin
            return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is still the cached one (the platform rejected it).

        Comparing first means that when many threads see a 401 for the same token,
        only one new token is fetched.
        """
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        budget = self._config.token_timeout
        ends = time.monotonic() + budget
        retrying = build_retrying(
            self._config.retry,
            sleep=self._sleep,
            on_retry=self._on_retry,
            deadline=ends,
            # IMS is another service: its 429s are not the platform's throttles.
            count_throttles=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._fetch_once(max(ends - time.monotonic(), 0.001))
        except AuthError:
            raise
        except SourceError as exc:
            raise TokenUnavailable(
                f"no IMS token from {self._origin} within {budget:g}s: {exc}"
            ) from None
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _fetch_once(self, seconds: float) -> tuple[str, float]:
        config = self._config
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "scope": config.scopes,
        }
        started = time.monotonic()
        exchange = self._transport.send(
            "POST",
            self._url,
            origin=self._origin,
            seconds=min(seconds, config.request_timeout),
            headers={"Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            data=form,
        )
        try:
            response = exchange.response
            where = describe("POST", self._url)
            logger.debug(
                "%s -> %d in %.3fs",
                where,
                response.status_code,
                time.monotonic() - started,
            )
            with exchange.reading():
                if response.status_code in (400, 401, 403):
                    # IMS names the problem (invalid_client, invalid_scope, ...).
                    reason = self._redact(error_text(response))
                    raise AuthError(
                        "IMS refused the token request for client_id "
                        f"{config.client_id!r} (HTTP {response.status_code}): "
                        f"{reason or 'no reason given'}; "
                        "check AEP_CLIENT_ID, AEP_CLIENT_SECRET and AEP_SCOPES"
                    )
                check_response(response, "POST", self._redact)
                body = read_bounded(response, MAX_JSON_BYTES, where)
            return _read_token(parse_json(body, where, response.status_code))
        finally:
            exchange.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ims_url={self._config.ims_url!r}, "
            f"client_id={self._config.client_id!r}, cached={self._token is not None})"
        )


def _again(exc: SourceError) -> SourceError:
    """A fresh error like ``exc`` for another thread to raise."""
    return type(exc)(str(exc))


def _read_token(body: object) -> tuple[str, float]:
    """The access token and its lifetime in seconds (``expires_in`` is seconds)."""
    if not isinstance(body, dict):
        raise InvalidResponse("IMS token answer is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidResponse("IMS token answer has no access_token")
    expires_in = body.get("expires_in")
    lifetime = math.nan
    if isinstance(expires_in, (int, float, str)) and not isinstance(expires_in, bool):
        with contextlib.suppress(ValueError):  # "abc" stays NaN and is refused
            lifetime = float(expires_in)
    if not (math.isfinite(lifetime) and lifetime > 0):
        raise InvalidResponse("IMS token answer has no positive expires_in")
    return token, lifetime
