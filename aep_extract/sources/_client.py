"""Authenticated, rate-limited, retried, counted requests to the AEP platform.

:class:`PlatformClient` is the plumbing under :class:`~.http.HttpAepSource`: it adds
the token and platform headers, timeouts and TLS settings to every request, renews the
token once on a 401, maps failures to the error tree and keeps the counters.

Every platform request holds a permit of the source's
:class:`~aep_extract._ratelimit.AdaptiveRateLimiter` from just before it is sent until
its answer has been read (a streamed download: until its ``with`` block ends), and
reports back: 429 and 503 cut the rate (and a ``Retry-After`` pauses every thread),
other answers below 400 let it recover. IMS token requests are not limited: IMS is
another service with its own limits, a token is fetched about once a day, and a
platform cooldown must not hold up a token refresh.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .._ratelimit import AdaptiveRateLimiter, Permit
from .._retry import build_retrying, parse_retry_after
from ..config import DEFAULT_MAX_REQUESTS_PER_SECOND
from ..errors import ApiError, ThrottledError
from ._auth import ImsTokenProvider
from ._http_errors import check_response, describe, map_requests_errors, parse_json

if TYPE_CHECKING:
    import tenacity

    from ..config import AepConfig
    from ..hooks import ExtractionHooks

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

POOL_SIZE = 64
"""Connections kept per host by a session we create (one per worker thread)."""


class PlatformClient:
    """Sends requests to ``config.platform_url`` on behalf of one source.

    Args:
        config: credentials, endpoints, timeouts, TLS, retry and rate settings.
        session: the session to use; None makes one that :meth:`close` closes.
        sleep: how retries and the rate limiter wait.
        clock: monotonic seconds of the rate limiter.
    """

    def __init__(
        self,
        config: AepConfig,
        session: Optional[requests.Session],
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._owns_session = session is None
        self._session = session if session is not None else _new_session()
        self.auth = ImsTokenProvider(config, self._session)
        self._retrying = build_retrying(
            config.retry, sleep=sleep, on_retry=self._on_retry
        )
        self.limiter = AdaptiveRateLimiter(
            config.max_requests_per_second or DEFAULT_MAX_REQUESTS_PER_SECOND,
            max_in_flight=config.max_in_flight,
            max_cooldown=config.retry.max_wait,
            clock=clock,
            sleep=sleep,
        )
        self.base_url = config.platform_url.rstrip("/")
        self._platform_headers = {
            "x-api-key": config.client_id,
            "x-gw-ims-org-id": config.org_id,
            "x-sandbox-name": config.sandbox,
        }
        self._lock = threading.Lock()
        self._counters = {"requests": 0, "retries": 0, "throttled": 0, "bytes": 0}
        self.hooks: Optional[ExtractionHooks] = None
        """Told of every retry and 429 (set by the Extractor; must not raise)."""

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
    ) -> requests.Response:
        """One authenticated request (not retried), its body read before it returns.

        On a 401 it is sent once more with a new token.

        Raises:
            ApiError: (or a subclass) for any status of 400 or more.
            TransientNetworkError: the connection failed.
        """
        permit, response = self._exchange(method, url, params, headers, stream=False)
        permit.release()
        return response

    @contextlib.contextmanager
    def stream(
        self, method: str, url: str, *, headers: Optional[Mapping[str, str]] = None
    ) -> Iterator[requests.Response]:
        """Like :meth:`request`, but the body is read inside the ``with`` block.

        The response is closed, and its rate-limiter permit released, when the block
        ends.
        """
        permit, response = self._exchange(method, url, None, headers, stream=True)
        try:
            yield response
        finally:
            response.close()
            permit.release()

    def _exchange(
        self,
        method: str,
        url: str,
        params: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
        stream: bool,
    ) -> tuple[Permit, requests.Response]:
        token = self.auth.token()
        permit, response = self._send(method, url, token, params, headers, stream)
        if response.status_code == 401:
            # The token expired or was revoked early: fetch a new one, once.
            response.close()
            permit.release()
            logger.info("%s -> 401: fetching a new token", describe(method, url))
            self.auth.invalidate(token)
            token = self.auth.token()
            permit, response = self._send(method, url, token, params, headers, stream)
        try:
            check_response(response, method)
        except ApiError as exc:
            permit.release()
            _hide(token, exc)
            self._feedback(permit, exc, response)
            if exc.status != 401:
                raise
            raise ApiError(
                f"{exc}; still unauthorized with a new IMS token: check the API key, "
                "org id, sandbox and the credential's product profile",
                status=401,
                url=exc.url,
                request_id=exc.request_id,
            ) from None
        except BaseException:
            response.close()
            permit.release()
            raise
        self.limiter.succeeded(permit)
        return permit, response

    def _feedback(
        self, permit: Permit, exc: ApiError, response: requests.Response
    ) -> None:
        """Tell the rate limiter about a 429 or a 503 (other errors say nothing)."""
        if isinstance(exc, ThrottledError):
            # The very value the retry policy waits: the cooldown ends as it wakes.
            self.limiter.throttled(permit, exc.retry_after)
        elif exc.status == 503:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.limiter.throttled(permit, retry_after)

    def _send(
        self,
        method: str,
        url: str,
        token: str,
        params: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
        stream: bool,
    ) -> tuple[Permit, requests.Response]:
        all_headers = {
            "Accept": "application/json",
            **self._platform_headers,
            "Authorization": f"Bearer {token}",
            **(headers or {}),
        }
        permit = self.limiter.acquire()
        started = time.monotonic()
        try:
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
        except BaseException:
            permit.release()
            raise
        self.bump("requests")
        if response.status_code == 429:
            self.bump("throttled")
            hooks = self.hooks
            if hooks is not None:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                hooks.throttled(retry_after=retry_after)
        logger.debug(
            "%s -> %d in %.3fs",
            describe(method, response.url),
            response.status_code,
            time.monotonic() - started,
        )
        return permit, response

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
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        action = retry_state.next_action
        self.retried(
            f"{type(exc).__name__}: {exc}",
            action.sleep if action is not None else 0.0,
        )

    def retried(self, reason: str, wait: float) -> None:
        """Count a retry and tell the hooks (``reason`` never holds a token)."""
        self.bump("retries")
        hooks = self.hooks
        if hooks is not None:
            hooks.retry(reason=reason, wait=wait)

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


def _hide(token: str, exc: ApiError) -> None:
    """Blank the token out of an error's text: Adobe never quotes it, but a proxy
    echoing request headers into its error body would."""
    exc.args = tuple(
        arg.replace(token, "***") if isinstance(arg, str) else arg for arg in exc.args
    )


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
