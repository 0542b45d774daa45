"""A host a client must never contact: it records every request and answers evil.

Point a hostile fault at it (``FaultRule("foreign_link", host=trap.netloc)``,
``FaultRule("redirect", location=trap.url + "{path}")``) and check afterwards that
:attr:`ForeignHost.requests` is empty, or at least carries no credentials::

    with ForeignHost() as trap, FakeAepPlatform.generate() as platform:
        rule = FaultRule("foreign_link", host=trap.netloc)
        platform.set_faults(FaultPlan(rules=[rule]))
        ...  # run the client
        assert not trap.requests
"""

from __future__ import annotations

import logging
import re
import threading
from types import TracebackType
from typing import Optional

from ._fake_http import FakeHttpServer, FakeRequest, FakeResponse

logger = logging.getLogger(__name__)

EVIL = b"EVIL"
"""The bytes every GET is answered with, repeated."""
_LARGEST = 256 * 1024 * 1024
"""The longest range served; a longer one gets the bare ``EVIL``."""
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d+)\s*", re.IGNORECASE)


class ForeignHost:
    """A tiny HTTP server on 127.0.0.1 (random port) that records every request.

    It answers so that a naive client carries on: a ``POST`` gets a valid-looking
    IMS token; a ``GET`` with ``Range: bytes=A-B`` gets 206 with exactly those
    bytes of ``EVIL`` repeated (``Content-Range: bytes A-B/*``), any other request
    200 and ``EVIL``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[FakeRequest] = []
        self._server: Optional[FakeHttpServer] = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> ForeignHost:
        """Start serving on a random port of 127.0.0.1; returns self.

        Raises:
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("the foreign host is already running")
        self._server = FakeHttpServer(_answer, self._record)
        self._server.start()
        logger.info("foreign host serving at %s", self._server.url)
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (no-op when not running)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> ForeignHost:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._server.url if self._server else "stopped"
        return f"ForeignHost({where}, requests={len(self.requests)})"

    # -- what tests need ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: not started.
        """
        if self._server is None:
            raise RuntimeError("the foreign host is not running; call start()")
        return self._server.url

    @property
    def netloc(self) -> str:
        """``127.0.0.1:PORT``, the ``host`` of a ``foreign_link`` rule.

        Raises:
            RuntimeError: not started.
        """
        return self.url[len("http://") :]

    @property
    def requests(self) -> list[FakeRequest]:
        """A snapshot of every request received, oldest first (thread-safe)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _answer(request: FakeRequest, base_url: str) -> FakeResponse:
    if request.method == "POST":
        token = {"access_token": "evil-token", "token_type": "bearer"}
        return FakeResponse.json(200, {**token, "expires_in": 86399})
    headers = {"Content-Type": "application/octet-stream"}
    match = _RANGE.fullmatch(request.headers.get("Range", ""))
    if match is None:
        return FakeResponse(200, headers, EVIL)
    first, last = int(match.group(1)), int(match.group(2))
    size = last - first + 1
    if not 0 < size <= _LARGEST:
        return FakeResponse(200, headers, EVIL)
    skip = first % len(EVIL)  # byte i of the "file" is EVIL[i % 4]
    body = (EVIL * ((skip + size) // len(EVIL) + 1))[skip : skip + size]
    headers["Content-Range"] = f"bytes {first}-{last}/*"
    return FakeResponse(206, headers, body)
