"""HTTP plumbing of the fake platform: request records, responses and the server."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from requests.structures import CaseInsensitiveDict

from ._fake_data import GeneratedBytes

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on Windows
    fcntl = termios = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_FILLER = b" " * _CHUNK
"""What an endless body goes on with (spaces: still inside a JSON string)."""
_TICK = 0.05
"""Seconds between checks, in a pause, that the server and the client are still on."""
_RESET_DRAIN_SECONDS = 1.0
"""Longest wait for the client to acknowledge the bytes sent before a reset."""
_RESET_GRACE_SECONDS = 0.02
"""Then this long for it to read them."""
_SIOCOUTQ = getattr(termios, "TIOCOUTQ", None) if termios is not None else None
JSON_TYPE = "application/json;charset=utf-8"


@attrs.define
class FakeRequest:
    """One request the fake platform received, as recorded in ``platform.requests``.

    Attributes:
        method: ``GET``, ``HEAD``, ``POST`` ...
        path: the percent-decoded URL path, e.g. ``/data/foundation/export/files/x``.
        query: query parameters, decoded (the last value of a repeated name).
        headers: request headers; lookups ignore case.
        body: the request body.
        status: the status code answered (0 until answered, or if the connection
            was dropped without an answer).
        segments: the path's segments, each percent-decoded on its own, so that an
            id holding ``/`` (sent as ``%2F``) stays one segment; by default
            ``path`` split at ``/``.
        body_sent: body bytes of the answer written to the connection so far.
        body_seconds: seconds from the first body byte written to the last.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CaseInsensitiveDict[str] = attrs.field(repr=False)
    body: bytes = attrs.field(default=b"", repr=False)
    status: int = 0
    segments: list[str] = attrs.field(repr=False)
    body_sent: int = attrs.field(default=0, repr=False)
    body_seconds: float = attrs.field(default=0.0, repr=False)

    @segments.default
    def _split_path(self) -> list[str]:
        return self.path.strip("/").split("/")


@attrs.frozen
class Delivery:
    """How a response is sent when not simply whole and at once.

    Every pause ends early, and the body with it, when the server stops or the
    client hangs up.

    Attributes:
        stop_after: send only this many body bytes (``Content-Length`` still
            announces the whole body), then end the connection; None sends it all.
        reset: end the connection with a TCP reset (RST) rather than a clean close.
        pieces: send the body in this many writes ...
        delay: ... with this many seconds between them.
        wait: seconds to wait before sending anything, the status line included.
        per_second: send the body at this many bytes per second; None at once.
        bandwidth: send the body at most this fast, in bytes per second, the
            connection's limit: it applies on top of the other ways (the lower
            of ``per_second`` and ``bandwidth`` wins); None for no limit.
        length: send ``Content-Length``; False sends ``Connection: close`` instead,
            so that the body ends where the connection does.
        endless: after the body, send filler bytes for as long as the client reads
            (with ``length`` False).
    """

    stop_after: Optional[int] = None
    reset: bool = False
    pieces: int = 1
    delay: float = 0.0
    wait: float = 0.0
    per_second: Optional[float] = None
    bandwidth: Optional[float] = None
    length: bool = True
    endless: bool = False


Body = Union[bytes, memoryview, GeneratedBytes]
"""A response body: bytes, a zero-copy view, or bytes generated as they are sent."""


@attrs.frozen
class FakeResponse:
    """A response to send: status, headers and a body; ``delivery`` makes the
    server send the body faultily; ``file_bytes`` marks a file's content, counted
    in :attr:`FakeHttpServer.served` as it is written."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: Body = b""
    delivery: Optional[Delivery] = None
    file_bytes: bool = False

    @classmethod
    def json(
        cls, status: int, payload: Any, content_type: str = JSON_TYPE
    ) -> FakeResponse:
        """A JSON response."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, {"Content-Type": content_type}, body)


_AT_ONCE = Delivery()


def limit_bandwidth(response: FakeResponse, per_second: float) -> FakeResponse:
    """``response`` sent at most ``per_second`` bytes per second (a lower limit it
    already has stays)."""
    delivery = response.delivery or _AT_ONCE
    if delivery.bandwidth is not None and delivery.bandwidth <= per_second:
        return response
    return attrs.evolve(response, delivery=attrs.evolve(delivery, bandwidth=per_second))


class ByteCount:
    """A thread-safe count of bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        """The bytes counted so far."""
        with self._lock:
            return self._value

    def add(self, count: int) -> None:
        """Count ``count`` more bytes."""
        with self._lock:
            self._value += count

    def reset(self) -> int:
        """Start again from 0; returns the count before."""
        with self._lock:
            value, self._value = self._value, 0
        return value


Dispatch = Callable[[FakeRequest, str], FakeResponse]
"""Answers a request; the second argument is the server's base URL."""


class FakeHttpServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that hands every request to ``dispatch``.

    It tracks open connections so that :meth:`close` also ends idle keep-alive ones,
    and counts in ``served`` the bytes of file bodies (``file_bytes`` answers) as
    they are written.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        dispatch: Dispatch,
        record: Callable[[FakeRequest], None],
        served: Optional[ByteCount] = None,
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dispatch = dispatch
        self.record = record
        self.served = ByteCount() if served is None else served
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-aep-{self.server_address[1]}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving, end open connections and release the port."""
        self.stopping.set()  # ends slow bodies' pauses
        self.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()
        self._thread.join(timeout=5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection's failure (a client reset, say) instead of printing it."""
        logger.debug(
            "fake AEP: connection from %s: %r", client_address, sys.exc_info()[1]
        )

    def track(self, connection: socket.socket, alive: bool) -> None:
        """Register (``alive``) or forget an open connection."""
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # an idle keep-alive connection ends after this many seconds
    server: FakeHttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        self.server.track(self.connection, alive=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake AEP: %s", format % args)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            body = None
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        request = FakeRequest(
            method=self.command,
            path=unquote(split.path),
            segments=[unquote(part) for part in split.path.strip("/").split("/")],
            query={name: values[-1] for name, values in query.items()},
            headers=CaseInsensitiveDict(dict(self.headers.items())),
            body=body or b"",
        )
        if body is None:
            self.close_connection = True
            response = FakeResponse(411, {"Connection": "close"})
        else:
            try:
                response = self.server.dispatch(request, self.server.url)
            except Exception:
                logger.exception("fake AEP failed on %s %s", self.command, self.path)
                response = FakeResponse.json(500, {"title": "Internal Server Error"})
        request.status = response.status
        self.server.record(request)
        self._send(request, response)

    def _send(self, request: FakeRequest, response: FakeResponse) -> None:
        delivery = response.delivery or _AT_ONCE
        try:
            if delivery.wait and not self._pause(delivery.wait):
                self.close_connection = True  # stopping, or the client left
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if delivery.length:
                self.send_header("Content-Length", str(len(response.body)))
            else:
                self.send_header("Connection", "close")  # the close ends the body
            self.end_headers()
            if self.command != "HEAD":
                self._write_body(_Writing(self, request, response), delivery)
            self.wfile.flush()
        except OSError as exc:  # the client went away; nothing left to answer
            logger.debug("fake AEP: connection lost: %s", exc)
            self.close_connection = True

    def _write_body(self, writing: _Writing, delivery: Delivery) -> None:
        stop = writing.size
        if delivery.stop_after is not None:
            stop = min(stop, delivery.stop_after)
        rates = [r for r in (delivery.per_second, delivery.bandwidth) if r is not None]
        rate = min(rates) if rates else None
        pieces = 1 if delivery.per_second is not None else delivery.pieces
        if not self._write_pieces(writing, stop, pieces, delivery.delay, rate):
            self.close_connection = True
            return
        if delivery.endless:
            while not self.server.stopping.is_set():
                self.wfile.write(_FILLER)  # blocks while the client does not read
        if delivery.stop_after is None:
            return
        self.close_connection = True  # a clean close (FIN) ends a truncated body
        if delivery.reset:
            self._reset()

    def _write_pieces(
        self,
        writing: _Writing,
        stop: int,
        pieces: int,
        delay: float,
        rate: Optional[float],
    ) -> bool:
        """Send the body up to ``stop`` in ``pieces`` writes, ``delay`` seconds
        apart, each at most ``rate`` bytes per second; False if the server
        stopped or the client left in a pause."""
        pieces = max(1, min(pieces, stop))
        bounds = [stop * index // pieces for index in range(pieces + 1)]
        for index in range(pieces):
            if index and not self._pause(delay):
                return False
            if not self._write_span(writing, bounds[index], bounds[index + 1], rate):
                return False
            self.wfile.flush()
        return True

    def _write_span(
        self, writing: _Writing, first: int, stop: int, rate: Optional[float]
    ) -> bool:
        """Send body bytes ``[first, stop)`` at ``rate`` bytes per second (None:
        at once), in steps of a quarter tick's worth: byte ``first + n`` goes no
        sooner than ``n / rate`` seconds after the start. False if the server
        stopped or the client left in a pause."""
        step = max(1, stop - first) if rate is None else max(1, int(rate * _TICK / 4))
        started = time.monotonic()
        for offset in range(first, stop, step):
            if rate is not None:
                early = (offset - first) / rate - (time.monotonic() - started)
                if early > 0 and not self._pause(early):
                    return False
            writing.write(offset, min(offset + step, stop))
        return True

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the server stops or the client hangs
        up (checked every tick), True after the whole wait."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self.server.stopping.wait(min(left, _TICK)) or self._hung_up():
                return False

    def _hung_up(self) -> bool:
        """Whether the client closed its end (end of stream, or an error); bytes
        it sent meanwhile stay for the next request."""
        timeout = self.connection.gettimeout()
        self.connection.settimeout(0)  # peek without waiting
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False  # nothing to read: still there
        except OSError:
            return True
        finally:
            self.connection.settimeout(timeout)

    def _reset(self) -> None:
        """Abort the connection: with SO_LINGER 0, close sends a TCP reset (RST).

        An RST discards data still queued on either side, so first let the client
        take what was sent: the part of the body really arrives before the reset.
        """
        deadline = time.monotonic() + _RESET_DRAIN_SECONDS
        while _unsent(self.connection) and time.monotonic() < deadline:
            if self.server.stopping.wait(0.005):
                break
        self.server.stopping.wait(_RESET_GRACE_SECONDS)
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        # rfile shares the socket; the descriptor closes only when both are closed.
        self.rfile.close()
        self.connection.close()


class _Writing:
    """One answer's body on its way: writes its pieces to the connection and
    accounts for them (the request's ``body_sent``, the server's ``served``)."""

    def __init__(
        self, handler: _Handler, request: FakeRequest, response: FakeResponse
    ) -> None:
        body = response.body
        self._body = memoryview(body) if isinstance(body, bytes) else body
        self._wfile = handler.wfile
        self._request = request
        self._served = handler.server.served if response.file_bytes else None
        self._began: Optional[float] = None
        self.size = len(body)

    def write(self, first: int, stop: int) -> None:
        """Write body bytes ``[first, stop)``, 64 KiB at a time (OSError if the
        client left)."""
        if self._began is None:
            self._began = time.monotonic()
        for offset in range(first, stop, _CHUNK):
            piece = self._body[offset : min(offset + _CHUNK, stop)]
            self._wfile.write(piece)
            self._request.body_sent += len(piece)
            self._request.body_seconds = time.monotonic() - self._began
            if self._served is not None:
                self._served.add(len(piece))


def _unsent(connection: socket.socket) -> int:
    """Bytes the kernel has not yet had acknowledged (0 where it cannot tell)."""
    if _SIOCOUTQ is None or fcntl is None:
        return 0
    try:
        raw = fcntl.ioctl(connection.fileno(), _SIOCOUTQ, struct.pack("i", 0))
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])
