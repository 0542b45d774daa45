"""OAuth Server-to-Server access tokens from Adobe IMS, cached and shared by threads."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import urlsplit

from ..errors import AuthError, InvalidResponse
from ._http_errors import check_response, error_text, map_requests_errors, parse_json

if TYPE_CHECKING:
    import requests

    from ..config import AepConfig

__all__ = ["ImsTokenProvider"]

logger = logging.getLogger(__name__)

TOKEN_PATH = "/ims/token/v3"


class ImsTokenProvider:
    """Fetches, caches and refreshes one IMS access token (client credentials grant).

    The token is replaced ``config.token_refresh_margin`` seconds before it expires
    (at most half its lifetime early, so a short-lived token is still reused), or
    after :meth:`invalidate`. A lock makes concurrent callers wait for one fetch.
    Retrying failed fetches is the caller's business: the errors raised are the
    library's retryable ones where a retry can help.

    Args:
        config: IMS URL, client id, secret and scopes; timeouts and TLS verification.
        session: the HTTP session to send the token request with.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        config: AepConfig,
        session: requests.Session,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._refresh_at = 0.0

    def token(self) -> str:
        """A valid access token, fetched only when none is cached or it is due.

        Raises:
            AuthError: IMS refused the credentials (HTTP 400, 401 or 403).
            ThrottledError, ServerError, TransientNetworkError: retryable failures.
            InvalidResponse: IMS answered without a usable token.
        """
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            self._token = None
            started = self._clock()
            token, lifetime = self._fetch()
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
        config = self._config
        url = config.ims_url.rstrip("/") + TOKEN_PATH
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "scope": config.scopes,
        }
        started = time.monotonic()
        with map_requests_errors("POST", url):
            response = self._session.post(
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=(config.connect_timeout, config.read_timeout),
                verify=config.verify_tls,
            )
        logger.debug(
            "POST %s -> %d in %.3fs",
            urlsplit(url).path,
            response.status_code,
            time.monotonic() - started,
        )
        if response.status_code in (400, 401, 403):
            # IMS names the problem (invalid_client, invalid_scope, ...); it should
            # never echo the secret, but scrub it in case.
            reason = error_text(response).replace(config.client_secret, "***")
            raise AuthError(
                f"IMS refused the token request for client_id {config.client_id!r} "
                f"(HTTP {response.status_code}): {reason or 'no reason given'}; "
                "check AEP_CLIENT_ID, AEP_CLIENT_SECRET and AEP_SCOPES"
            )
        check_response(response, "POST")
        return _read_token(parse_json(response, "POST"))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ims_url={self._config.ims_url!r}, "
            f"client_id={self._config.client_id!r}, cached={self._token is not None})"
        )


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
