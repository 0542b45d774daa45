"""How a request leaves the library: to a trusted origin only, never redirected,
and bounded in total time.

The IMS token provider and the platform client both send through :class:`Transport`:

- **Origins.** Where a request goes is decided on the URL exactly as urllib3 will
  connect to it (``urllib3.util.parse_url`` of the prepared URL), not as
  ``urllib.parse`` reads it: the two disagree on links such as
  ``https://evil.example\\@platform.adobe.io/``. A request whose prepared URL names
  another origin than the configured one is refused before anything is sent.
  :func:`rebase` rebuilds a link taken from an answer on the configured origin.
- **Redirects** are never followed; the caller turns a 3xx into an error that names
  where it pointed (see :func:`~._http_errors.check_response`).
- **Deadlines.** Every exchange has a total deadline, from sending to the last body
  byte. A watchdog thread shuts the connection of an exchange that outlives it, so a
  server trickling an answer one byte a second cannot hold a thread for ever;
  :meth:`Deadlines.interrupt` ends every exchange in flight at once (an aborted run).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

import attrs
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from ..errors import DeadlineExceeded, SourceError, UntrustedLinkError
from ._http_errors import describe, map_requests_errors

if TYPE_CHECKING:
    from ..config import AepConfig

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"https": 443, "http": 80}
_WATCHDOG_TICK = 0.1
"""Seconds between the watchdog's looks at expired exchanges whose socket was not
connected yet when their deadline passed."""


@attrs.frozen
class Origin:
    """Scheme, host and port: where credentials may go."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin urllib3 connects to for ``url``.

        Raises:
            UntrustedLinkError: the URL has no host, or cannot be parsed.
        """
        try:
            parts = parse_url(url)
        except (urllib3.exceptions.LocationParseError, ValueError) as exc:
            raise UntrustedLinkError(f"unreadable URL {_quoted(url)}: {exc}") from None
        scheme = (parts.scheme or "").lower()
        host = (parts.host or "").lower()
        if not host or scheme not in _DEFAULT_PORTS:
            raise UntrustedLinkError(f"URL {_quoted(url)} names no http(s) host")
        return cls(scheme, host, parts.port or _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def rebase(link: str, base_url: str) -> str:
    """A link from an answer, moved onto ``base_url``'s origin (path and query kept).

    Links may name another host or the explicit ``:443`` port; whatever they name,
    the request goes to the configured origin. A path prefix of ``base_url`` is not
    added to the link's path.

    Raises:
        UntrustedLinkError: the link holds a backslash, whitespace or a control
            character, or urllib3 and ``urllib.parse`` read different hosts in it.
    """
    if "\\" in link or any(
        ch.isspace() or unicodedata.category(ch) == "Cc" for ch in link
    ):
        raise UntrustedLinkError(
            f"link {_quoted(link)} holds a backslash, space or control character; "
            "not followed"
        )
    target = Origin.of(link)
    seen = (urlsplit(link).hostname or "").lower()
    if seen != target.host:
        raise UntrustedLinkError(
            f"link {_quoted(link)} is ambiguous: it names host {target.host!r} to "
            f"urllib3 and {seen!r} to urllib.parse; not followed"
        )
    parts = parse_url(link)
    base = parse_url(base_url)
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{base.scheme}://{base.netloc}{path}{query}"


def _quoted(url: str, limit: int = 200) -> str:
    text = url if len(url) <= limit else url[: limit - 3] + "..."
    return repr(text)


class Watch:
    """One exchange's deadline; the watchdog shuts its connections when it passes."""

    def __init__(self, owner: Deadlines, seconds: float, deadline: float) -> None:
        self._owner = owner
        self.seconds = seconds
        self.deadline = deadline
        self.reason: Optional[str] = None
        """None while the exchange may go on, else why it was cut short."""
        self._connections: list[Any] = []
        self._shut: set[int] = set()

    @property
    def expired(self) -> bool:
        """Whether the watchdog has cut (or is cutting) the exchange short."""
        return self.reason is not None

    def attach(self, connection: Any) -> None:
        """Watch a urllib3 connection (its ``sock`` is shut at the deadline)."""
        with self._owner.lock:
            if all(c is not connection for c in self._connections):
                self._connections.append(connection)
        if self.expired:
            self._shut_down()

    def attach_response(self, response: requests.Response) -> None:
        """Watch the connection a streamed response is read from."""
        connection = getattr(response.raw, "_connection", None)
        if connection is not None:
            self.attach(connection)

    def release(self) -> None:
        """The exchange is over: stop watching it."""
        self._owner.forget(self)

    def expire(self, reason: str) -> None:
        """Cut the exchange short now (called by the watchdog)."""
        if self.reason is None:
            self.reason = reason
        self._shut_down()

    def _shut_down(self) -> bool:
        """Shut every attached socket; True once each connected one is shut."""
        with self._owner.lock:
            connections = list(self._connections)
        done = True
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is None:
                done = False  # still connecting: look again on the next tick
                continue
            if id(sock) in self._shut:
                continue
            # socket.socket's own shutdown: ssl.SSLSocket.shutdown would also drop its
            # SSL object under the reading thread's feet.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            self._shut.add(id(sock))
        return done

    def error(self, method: str, url: str) -> DeadlineExceeded:
        """The error that explains why the exchange was cut short."""
        if self.reason == "interrupted":
            return DeadlineExceeded(
                f"{describe(method, url)}: interrupted (the run was aborted)"
            )
        return DeadlineExceeded(
            f"{describe(method, url)}: no complete answer within {self.seconds:g}s "
            "(the request's total deadline)"
        )

    @contextlib.contextmanager
    def reading(self, method: str, url: str) -> Iterator[None]:
        """Map errors raised inside; an exchange cut short raises why instead."""
        try:
            with map_requests_errors(method, url):
                yield
        except SourceError as exc:
            if self.expired:
                raise self.error(method, url) from exc
            raise


class Deadlines:
    """A watchdog thread that cuts exchanges short at their deadline.

    Args:
        clock: monotonic seconds.
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.lock = threading.Lock()
        self._clock = clock
        self._wake = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, Watch]] = []
        self._live: set[Watch] = set()
        self._cut: set[Watch] = set()
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, seconds: float) -> Watch:
        """Start the clock of an exchange allowed ``seconds`` in total."""
        watch = Watch(self, seconds, self._clock() + seconds)
        with self.lock:
            self._live.add(watch)
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            self._start()
            if self._heap[0][2] is watch:
                # Only an earlier deadline moves the watchdog's wake-up: waking it
                # for every request costs a thread switch each (most deadlines
                # are equally long, so they come after those already watched).
                self._wake.notify()
        return watch

    def forget(self, watch: Watch) -> None:
        """Stop watching ``watch`` (its exchange is over)."""
        with self.lock:
            self._live.discard(watch)
            self._cut.discard(watch)
            watch._connections.clear()
            if len(self._heap) > 2 * len(self._live) + 64:
                # Forgotten watches stay in the heap until their deadline: drop them.
                self._heap = [entry for entry in self._heap if entry[2] in self._live]
                heapq.heapify(self._heap)

    def interrupt(self) -> int:
        """Cut every exchange in flight short now; returns how many."""
        with self.lock:
            watches = list(self._live)
        for watch in watches:
            watch.expire("interrupted")
        with self.lock:
            self._cut.update(w for w in watches if w in self._live)
            self._wake.notify()
        return len(watches)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="aep-extract-deadlines", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                due = self._due()
                timeout = self._next_wait()
            for watch in due:
                watch.expire("deadline")
            # Shut again what was still connecting; drop what is done.
            with self.lock:
                pending = list(self._cut)
            finished = [watch for watch in pending if watch._shut_down()]
            with self.lock:
                self._cut.difference_update(finished)
                if not due and not self._cut and not self._heap:
                    if not self._wake.wait(timeout=30.0) and not self._heap:
                        self._thread = None
                        return
                elif not due:
                    self._wake.wait(timeout=timeout)

    def _due(self) -> list[Watch]:
        now = self._clock()
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, _, watch = heapq.heappop(self._heap)
            if watch in self._live:
                due.append(watch)
                self._cut.add(watch)
        return due

    def _next_wait(self) -> float:
        waits = [_WATCHDOG_TICK] if self._cut else []
        if self._heap:
            waits.append(max(self._heap[0][0] - self._clock(), 0.0))
        return min(waits) if waits else 30.0


_current = threading.local()
"""The watch of the exchange this thread is sending (for :class:`_WatchedPools`)."""


@contextlib.contextmanager
def _sending(watch: Watch) -> Iterator[None]:
    _current.watch = watch
    try:
        yield
    finally:
        _current.watch = None


def _attach_current(connection: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        connection = super()._get_conn(timeout)
        _attach_current(connection)
        return connection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        connection = super()._get_conn(timeout)
        _attach_current(connection)
        return connection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections the deadline watchdog can shut while a request
    waits for its answer's headers (not only while its body is read)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


def new_session(pool_size: int) -> requests.Session:
    """A session with watched connections and no retries of urllib3's own."""
    session = requests.Session()
    adapter = WatchedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@attrs.define
class Exchange:
    """A request sent and its answer's headers received; the body is still to read."""

    response: requests.Response
    watch: Watch
    method: str

    @property
    def url(self) -> str:
        """The URL the answer came from."""
        return str(self.response.url)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Map errors of reading the body (see :meth:`Watch.reading`)."""
        return self.watch.reading(self.method, self.url)

    def close(self) -> None:
        """Close the answer (its connection is not reused unless fully read)."""
        self.response.close()
        self.watch.release()


class Transport:
    """Sends requests to trusted origins over one session (see the module docstring).

    Args:
        session: the session to use; None makes one (closed by :meth:`close`).
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for the next bytes of an answer.
        verify_tls: check TLS certificates.
        pool_size: connections kept per host by a session made here.
    """

    def __init__(
        self,
        session: Optional[requests.Session],
        *,
        connect_timeout: float,
        read_timeout: float,
        verify_tls: bool,
        pool_size: int,
    ) -> None:
        self._owns_session = session is None
        self.session = session if session is not None else new_session(pool_size)
        self._timeout = (connect_timeout, read_timeout)
        self._verify = verify_tls
        self.deadlines = Deadlines()

    @classmethod
    def for_config(
        cls,
        config: AepConfig,
        session: Optional[requests.Session] = None,
    ) -> Transport:
        """A transport with ``config``'s timeouts, TLS verification and, for a
        session made here, connection pool size
        (``config.effective_concurrency.http_connections``)."""
        return cls(
            session,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            verify_tls=config.verify_tls,
            pool_size=config.effective_concurrency.http_connections,
        )

    def send(
        self,
        method: str,
        url: str,
        *,
        origin: Origin,
        seconds: float,
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        data: Optional[Mapping[str, str]] = None,
    ) -> Exchange:
        """Send one request to ``origin`` and wait for its answer's headers.

        The whole exchange, body included, must end within ``seconds``.

        Raises:
            UntrustedLinkError: the prepared URL names another origin.
            TransientNetworkError: the connection failed, or the deadline passed.
            SourceError: any other failure to send.
        """
        prepared = self.session.prepare_request(
            requests.Request(
                method, url, params=dict(params or {}), headers=headers, data=data
            )
        )
        sent_to = prepared.url or url
        target = Origin.of(sent_to)
        if target != origin:
            raise UntrustedLinkError(
                f"{describe(method, sent_to)}: goes to {target}, not to the "
                f"configured {origin}; nothing was sent"
            )
        settings = self.session.merge_environment_settings(
            sent_to, {}, True, self._verify, None
        )
        watch = self.deadlines.watch(seconds)
        try:
            with _sending(watch), watch.reading(method, sent_to):
                response = self.session.send(
                    prepared, allow_redirects=False, timeout=self._timeout, **settings
                )
        except BaseException:
            watch.release()
            raise
        watch.attach_response(response)
        return Exchange(response, watch, method)

    def close(self) -> None:
        """Close the session if it was made here."""
        if self._owns_session:
            self.session.close()
