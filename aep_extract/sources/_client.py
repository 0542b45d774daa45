"""Authenticated, rate-limited, retried, counted requests to the AEP platform.

:class:`PlatformClient` is the plumbing under :class:`~.http.HttpAepSource`: it adds
the token and platform headers to every request and sends it through the
:class:`~._transport.Transport` (trusted origin, no redirects, a total deadline),
renews the token on a 401 and maps failures to the error tree. Requests, retries,
429s and bytes are reported to the run the request belongs to (:mod:`aep_extract._run`)
and added to the source's lifetime totals; work of an aborting run sends nothing more
and retries nothing.

Every platform request holds a permit of the source's
:class:`~aep_extract._ratelimit.AdaptiveRateLimiter` from just before it is sent until
its answer has been read (a streamed download: until its ``with`` block ends), and
reports back: 429 and 503 cut the rate (and a ``Retry-After`` pauses every thread);
other answers below 400 let it grow, as soon as their headers are in, so that their
latency (its signal of a platform slowing down) leaves out the time a body takes. IMS
token requests are not limited: IMS is
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

import requests

from .._ratelimit import AdaptiveRateLimiter, Permit
from .._retry import build_retrying, parse_retry_after
from .._run import aborted, pause, report_count, report_retry
from ..errors import ApiError, DeadlineExceeded, ThrottledError, Unauthorized
from ._auth import ImsTokenProvider
from ._bodies import MAX_JSON_BYTES, parse_json, read_bounded
from ._http_errors import Redactor, check_response, describe
from ._transport import Exchange, Origin, Transport, rebase

if TYPE_CHECKING:
    import tenacity

    from ..config import AepConfig

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_JSON_ENCODINGS = "gzip, deflate"
"""What a JSON request accepts: both are decoded with a size cap (see ._bodies)."""


class PlatformClient:
    """Sends requests to ``config.platform_url`` on behalf of one source.

    Args:
        config: credentials, endpoints, timeouts, TLS, retry and concurrency
            settings.
        session: the session to use (its pool as it is); None makes one, with
            ``config.effective_concurrency.http_connections`` connections per host,
            that :meth:`close` closes.
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
        self.redact = Redactor(config.client_secret)
        concurrency = config.effective_concurrency
        self.transport = Transport.for_config(config, session)
        self.auth = ImsTokenProvider(
            config,
            self.transport,
            sleep=sleep,
            redact=self.redact,
            on_retry=self._on_retry,
        )
        self._retrying = build_retrying(
            config.retry,
            sleep=sleep,
            on_retry=self._on_retry,
            on_throttle=lambda retry_after: self._total("throttled"),
        )
        self.limiter = AdaptiveRateLimiter(
            concurrency.requests_per_second,
            max_in_flight=concurrency.in_flight,
            max_cooldown=config.retry.max_wait,
            clock=clock,
            sleep=lambda seconds: pause(seconds, sleep),
        )
        self.base_url = config.platform_url.rstrip("/")
        self.origin = Origin.of(self.base_url)
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

        The answer may be gzip- or deflate-encoded; it is read with a size cap
        (:data:`~._bodies.MAX_JSON_BYTES`) within the request's total deadline.

        Raises:
            InvalidResponse: the body is not JSON, too large, or in another encoding.
            ApiError, TransientNetworkError: after the retry policy gave up.
        """

        def once() -> Any:
            headers = {"Accept-Encoding": _JSON_ENCODINGS}
            with self.stream("GET", url, params=params, headers=headers) as exchange:
                where = describe("GET", exchange.url)
                with exchange.reading():
                    body = read_bounded(exchange.response, MAX_JSON_BYTES, where)
                return parse_json(body, where, exchange.response.status_code)

        return self.call(once)

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Iterator[Exchange]:
        """One authenticated request (not retried) whose body is read inside the
        ``with`` block; its response is closed, and its rate-limiter permit
        released, when the block ends.

        A 401 drops the token; the request is sent once more at once with a new
        one, and a second 401 raises :class:`~aep_extract.errors.Unauthorized`,
        which the retry policy retries (with yet another token).

        Raises:
            ApiError: (or a subclass) for any status of 400 or more.
            UntrustedLinkError: a redirect, or a URL off the configured origin.
            TransientNetworkError: the connection failed or the deadline passed.
        """
        permit, exchange = self._exchange(method, url, params, headers)
        try:
            yield exchange
        finally:
            exchange.close()
            permit.release()

    def _exchange(
        self,
        method: str,
        url: str,
        params: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
    ) -> tuple[Permit, Exchange]:
        token = self.auth.token()
        permit, exchange = self._send(method, url, token, params, headers)
        if exchange.response.status_code == 401:
            # The token expired or was revoked early: fetch a new one at once.
            exchange.close()
            permit.release()
            logger.info("%s -> 401: fetching a new token", describe(method, url))
            self.auth.invalidate(token)
            token = self.auth.token()
            permit, exchange = self._send(method, url, token, params, headers)
        try:
            check_response(exchange.response, method, self.redact)
        except ApiError as exc:
            exchange.close()
            permit.release()
            self._feedback(permit, exc, exchange.response)
            if not isinstance(exc, Unauthorized):
                raise
            self.auth.invalidate(token)
            raise Unauthorized(
                f"{exc}; a new IMS token is fetched for the next try; if this "
                "persists, check the API key, org id, sandbox and the credential's "
                "product profile",
                status=401,
                url=exc.url,
                request_id=exc.request_id,
            ) from None
        except BaseException:
            exchange.close()
            permit.release()
            raise
        self.limiter.succeeded(permit)
        return permit, exchange

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
    ) -> tuple[Permit, Exchange]:
        if aborted():
            raise DeadlineExceeded(
                f"{describe(method, url)}: not sent, the run is aborting"
            )
        all_headers = {
            "Accept": "application/json",
            **self._platform_headers,
            "Authorization": f"Bearer {token}",
            **(headers or {}),
        }
        permit = self.limiter.acquire()
        started = time.monotonic()
        try:
            exchange = self.transport.send(
                method,
                url,
                origin=self.origin,
                seconds=self.config.request_timeout,
                params=params,
                headers=all_headers,
            )
        except BaseException:
            permit.release()
            raise
        response = exchange.response
        self.bump("requests")
        logger.debug(
            "%s -> %d in %.3fs",
            describe(method, exchange.url),
            response.status_code,
            time.monotonic() - started,
        )
        return permit, exchange

    def on_platform(self, url: str) -> str:
        """A link from an answer, moved onto the configured platform origin.

        Raises:
            UntrustedLinkError: an ambiguous link (see :func:`._transport.rebase`).
        """
        return rebase(url, self.base_url)

    def interrupt(self) -> int:
        """Cut every request in flight short now (an aborted run); returns how
        many."""
        return self.transport.deadlines.interrupt()

    def _on_retry(self, retry_state: tenacity.RetryCallState) -> None:
        # The retry policy has told the run; this keeps the lifetime total.
        self._total("retries")

    def retried(self, reason: str, wait: float) -> None:
        """Count a retry made outside the retry policy (a download resuming after
        progress) and tell the run (``reason`` never holds a token)."""
        self._total("retries")
        report_retry(reason=reason, wait=wait)

    def bump(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` of ``name`` for the run and in the lifetime totals."""
        self._total(name, amount)
        report_count(name, amount)

    def _total(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def counters(self) -> dict[str, int]:
        """A snapshot of the lifetime totals, every run's together."""
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        """Close the session if we made it."""
        self.transport.close()
