"""Authenticated, retried, counted requests to the AEP platform gateway.

:class:`PlatformClient` is the plumbing under :class:`~.http.HttpAepSource`: it adds
the token and platform headers, timeouts and TLS settings to every request, renews the
token once on a 401, maps failures to the error tree and keeps the counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .._retry import build_retrying
from ..errors import ApiError
from ._auth import ImsTokenProvider
from ._http_errors import check_response, describe, map_requests_errors, parse_json

if TYPE_CHECKING:
    import tenacity

    from ..config import AepConfig

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

POOL_SIZE = 64
"""Connections kept per host by a session we create (one per worker thread)."""


class PlatformClient:
    """Sends requests to ``config.platform_url`` on behalf of one source.

    Args:
        config: credentials, endpoints, timeouts, TLS and retry settings.
        session: the session to use; None makes one that :meth:`close` closes.
        sleep: how retries wait.
    """

    def __init__(
        self,
        config: AepConfig,
        session: Optional[requests.Session],
        sleep: Callable[[float], None],
    ) -> None:
        self.config = config
        self._owns_session = session is None
        self._session = session if session is not None else _new_session()
        self.auth = ImsTokenProvider(config, self._session)
        self._retrying = build_retrying(
            config.retry, sleep=sleep, on_retry=self._on_retry
        )
        self.base_url = config.platform_url.rstrip("/")
        self._platform_headers = {
            "x-api-key": config.client_id,
            "x-gw-ims-org-id": config.org_id,
            "x-sandbox-name": config.sandbox,
        }
        self._lock = threading.Lock()
        self._counters = {"requests": 0, "retries": 0, "throttled": 0, "bytes": 0}

    def retrying(self) -> tenacity.Retrying:
        """A fresh controller of the retry policy (its state is per operation)."""
        return self._retrying.copy()

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` under the retry policy."""
        return self.retrying()(fn)

    def get_json(self, url: str, params: Optional[Mapping[str, str]] = None) -> Any:
        """GET a JSON document under the retry policy.

        Raises:
            InvalidResponse: the body is not JSON.
            ApiError, TransientNetworkError: after the retry policy gave up.
        """
        return self.call(lambda: parse_json(self.request("GET", url, params), "GET"))

    def request(
        self,
        method: str,
        url: str,
        params: Optional[Mapping[str, str]] = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        stream: bool = False,
    ) -> requests.Response:
        """One authenticated request (not retried); on 401 one more with a new token.

        Raises:
            ApiError: (or a subclass) for any status of 400 or more.
            TransientNetworkError: the connection failed.
        """
        token = self.auth.token()
        response = self._send(method, url, token, params, headers, stream)
        if response.status_code == 401:
            # The token expired or was revoked early: fetch a new one, once.
            response.close()
            self.auth.invalidate(token)
            token = self.auth.token()
            response = self._send(method, url, token, params, headers, stream)
        try:
            check_response(response, method)
        except ApiError as exc:
            if exc.status != 401:
                raise
            raise ApiError(
                f"{exc}; still unauthorized with a new IMS token: check the API key, "
                "org id, sandbox and the credential's product profile",
                status=401,
                url=exc.url,
                request_id=exc.request_id,
            ) from None
        return response

    def _send(
        self,
        method: str,
        url: str,
        token: str,
        params: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
        stream: bool,
    ) -> requests.Response:
        all_headers = {
            "Accept": "application/json",
            **self._platform_headers,
            "Authorization": f"Bearer {token}",
            **(headers or {}),
        }
        started = time.monotonic()
        with map_requests_errors(method, url):
            response = self._session.request(
                method,
                url,
                params=params,
                headers=all_headers,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                verify=self.config.verify_tls,
                stream=stream,
            )
        self.bump("requests")
        if response.status_code == 429:
            self.bump("throttled")
        logger.debug(
            "%s -> %d in %.3fs",
            describe(method, response.url),
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def on_platform(self, url: str) -> str:
        """``url`` moved onto the configured platform origin if it points elsewhere.

        Links in answers (``_links.next``, file hrefs) may name another host or the
        explicit ``:443`` port; the bearer token only ever goes to ``platform_url``.
        (A path prefix in ``platform_url`` is not added to such links.)
        """
        target, base = urlsplit(url), urlsplit(self.base_url)
        if _origin(target) == _origin(base):
            return url
        return urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))

    def _on_retry(self, retry_state: tenacity.RetryCallState) -> None:
        self.bump("retries")

    def bump(self, name: str, amount: int = 1) -> None:
        """Add to a counter."""
        with self._lock:
            self._counters[name] += amount

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        """Close the session if we made it."""
        if self._owns_session:
            self._session.close()


def _new_session() -> requests.Session:
    session = requests.Session()
    # Retries are the retry policy's, not urllib3's; pool a connection per thread.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port
