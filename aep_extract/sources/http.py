"""The default source: AEP Catalog and Data Access over HTTP with ``requests``.

Every request carries the IMS token and the platform headers, goes only to the
configured origin and is never redirected, has connect/read timeouts and a total
deadline (:mod:`._transport`), goes through the one retry policy
(:mod:`aep_extract._retry`) and the source's rate limiter
(:mod:`aep_extract._ratelimit`), and has its failures mapped to the error tree in one
place (:mod:`._http_errors`). Files are read in ``Range`` requests of ``chunk_size``
bytes; a failed request resumes from the last byte handed to the caller.

Every walk through pages and directories is bounded (:data:`MAX_PAGES`,
:data:`MAX_LISTED`, :data:`MAX_DEPTH`), and a page that adds nothing new ends it
with an error: a platform whose paging never ends cannot keep a run going for ever.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any, Callable, Optional
from urllib.parse import quote, urljoin

import requests

from .._ratelimit import AdaptiveRateLimiter
from .._run import aborted
from ..config import AepConfig
from ..errors import (
    RETRYABLE,
    DeadlineExceeded,
    IncompleteDownload,
    InvalidResponse,
    NotFoundError,
)
from ..models import Batch, FileRef, TimeWindow
from ..registry import require_bare
from . import _parsing as parsing
from ._bodies import announced_length, content_encoding
from ._client import PlatformClient
from ._http_errors import describe
from .base import AepSource, check_range

__all__ = ["HttpAepSource"]

logger = logging.getLogger(__name__)

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
PAGE_SIZE = 100
"""Catalog and Data Access both cap a page at 100 entries."""
PIECE_SIZE = 1024 * 1024
"""Bytes read from the socket at a time, and the largest bytes object
:meth:`HttpAepSource.read_file` yields; a broken read loses at most this much.
Larger pieces cost less per byte (each one passes the copy loop, the checksum and
the sink once): 1 MiB takes about 15 % less CPU per byte than 64 KiB did."""
MAX_PAGES = 100_000
"""Pages one listing may take (10 million entries at 100 a page)."""
MAX_LISTED = 1_000_000
"""Files (and sub-directories) one batch may list."""
MAX_DEPTH = 32
"""How deep directories of dataset files may nest."""
_COUNT_METRICS = ("outputFileCount", "outputRecordCount", "outputByteSize")
"""Catalog batch metrics that, when positive, say the batch holds data."""


class HttpAepSource(AepSource):
    """Reads batches, file listings and bytes from AEP's Catalog and Data Access APIs.

    Thread-safe: one instance serves every worker thread, and its rate limiter
    (``config.concurrency``: requests per second and in flight) bounds them all.
    Each source has its own limiter: to share one budget between several extractors
    in a process, give them the same source.

    Args:
        config: credentials, endpoints, chunk size, timeouts, retry policy, rate
            limits and connection pool (``config.concurrency``).
        session: a ``requests.Session`` to use (for proxies or custom adapters); it is
            left open by :meth:`close`. By default the source makes and owns one.
        sleep: how retries and the rate limiter wait (inject a recorder in tests).
        clock: monotonic seconds of the rate limiter (default
            ``time.monotonic``; inject one that ``sleep`` advances in tests).
    """

    def __init__(
        self,
        config: AepConfig,
        *,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        self.config = config
        self._client = PlatformClient(
            config, session, sleep, time.monotonic if clock is None else clock
        )
        self._base = self._client.base_url

    uses_concurrency = True

    @classmethod
    def check_url(cls, url: str) -> None:
        """``aep://``: the platform the ``AEP_*`` variables configure."""
        require_bare("source", url)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> HttpAepSource:
        """The source of ``aep://``: :meth:`from_env` with ``options``."""
        cls.check_url(url)
        return cls.from_env(**options)

    @classmethod
    def from_env(
        cls, env: Optional[Mapping[str, str]] = None, **options: Any
    ) -> HttpAepSource:
        """Build from ``AEP_*`` variables (``os.environ`` by default).

        Args:
            env: the variables to read.
            **options: ``session``, ``sleep`` and ``clock`` go to the constructor;
                anything else overrides an :class:`~aep_extract.config.AepConfig`
                field.

        Raises:
            ConfigError: a required variable is missing or a value is invalid.
        """
        session = options.pop("session", None)
        sleep = options.pop("sleep", time.sleep)
        clock = options.pop("clock", None)
        config = AepConfig.from_env(env, **options)
        return cls(config, session=session, sleep=sleep, clock=clock)

    # -- Catalog -----------------------------------------------------------------

    def get_dataset(self, dataset_id: str) -> Mapping[str, Any]:
        """The dataset's Catalog object (the answer is keyed by id; this is the value).

        Raises:
            NotFoundError: no such dataset in this org and sandbox.
            InvalidResponse: the answer does not contain the dataset.
        """
        url = f"{self._base}{CATALOG}/dataSets/{quote(dataset_id, safe='')}"
        try:
            body = self._client.get_json(url)
        except NotFoundError as exc:
            raise NotFoundError(
                f"dataset {dataset_id} not found in sandbox {self.config.sandbox!r} "
                f"of org {self.config.org_id}: {exc}",
                status=exc.status,
                url=exc.url,
                request_id=exc.request_id,
            ) from None
        dataset = body.get(dataset_id) if isinstance(body, dict) else None
        if not isinstance(dataset, dict):
            raise InvalidResponse(
                f"{describe('GET', url)}: answer has no object for {dataset_id}"
            )
        return dataset

    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        """Batches of a dataset created in ``[window.start, window.end)``, oldest first.

        Pages through ``/catalog/batches`` 100 at a time, oldest first, until a short
        page. Pages are cut by time, not by offset: the next page asks for batches
        created after the newest one seen (less 1 ms, de-duplicated), so a batch
        leaving or joining the listing meanwhile cannot shift a page over another
        one. Batches are yielded once each, and only if their ``created`` lies in the
        window and their ``relatedObjects`` name the dataset (Catalog filters are
        trusted but checked).

        Args:
            dataset_id: the dataset.
            window: the half-open window on ``created``.
            status: Catalog status filter (e.g. ``"success"``); None for all.

        Raises:
            InvalidResponse: a page or a batch does not have the documented shape.
        """
        url = f"{self._base}{CATALOG}/batches"
        params = {
            "dataSet": dataset_id,
            # The API's bounds are strict; the window includes its start.
            "createdAfter": str(window.start_ms - 1),
            "createdBefore": str(window.end_ms),
            "orderBy": "asc:created",
            "limit": str(PAGE_SIZE),
        }
        if status is not None:
            params["status"] = status
        seen: set[str] = set()
        after, start = window.start_ms - 1, 0
        for pages in itertools.count(1):
            if pages > MAX_PAGES:
                raise InvalidResponse(
                    f"{describe('GET', url)}: the Catalog's paging did not end after "
                    f"{MAX_PAGES} pages (MAX_PAGES); giving up"
                )
            query = {**params, "createdAfter": str(after), "start": str(start)}
            where = f"{describe('GET', url)} (createdAfter={after}, start={start})"
            page = self._client.get_json(url, query)
            if not isinstance(page, dict):
                raise InvalidResponse(f"{where}: not a JSON object")
            newest, fresh, past_end = after, 0, False
            oldest: Optional[int] = None
            for batch_id, obj in page.items():
                batch = parsing.parse_batch(batch_id, obj, dataset_id)
                newest = max(newest, batch.created_ms)
                if oldest is None or batch.created_ms < oldest:
                    oldest = batch.created_ms
                past_end = past_end or batch.created_ms >= window.end_ms
                if batch_id in seen:  # the page boundary's millisecond, again
                    continue
                seen.add(batch_id)
                fresh += 1
                if window.contains_ms(batch.created_ms) and parsing.related_to_dataset(
                    batch.raw, dataset_id
                ):
                    yield batch
                else:
                    logger.debug(
                        "batch %s: outside window or dataset, skipped", batch_id
                    )
            if len(page) < PAGE_SIZE or past_end:
                return  # oldest first: a batch past the end means no more inside
            if not fresh:
                raise InvalidResponse(
                    f"{where}: a full page of batches already listed; the Catalog "
                    "ignores the paging parameters"
                )
            if oldest == newest:  # a whole page created in one millisecond:
                # step through that millisecond's batches by offset.
                start = start + PAGE_SIZE if after == newest - 1 else PAGE_SIZE
                after = newest - 1
            else:
                after, start = newest - 1, 0

    def get_batch(
        self, dataset_id: str, batch_id: str, *, created_ms: int
    ) -> Optional[Batch]:
        """The batch from ``GET /catalog/batches/{id}``; None if it is gone or
        belongs to another dataset (``created_ms`` is not needed here).

        Raises:
            InvalidResponse: the answer does not have the documented shape.
        """
        url = f"{self._base}{CATALOG}/batches/{quote(batch_id, safe='')}"
        try:
            body = self._client.get_json(url)
        except NotFoundError:
            return None
        obj = body.get(batch_id) if isinstance(body, dict) else None
        if obj is None:
            raise InvalidResponse(
                f"{describe('GET', url)}: answer has no object for {batch_id}"
            )
        batch = parsing.parse_batch(batch_id, obj, dataset_id)
        return batch if parsing.related_to_dataset(batch.raw, dataset_id) else None

    # -- Data Access: listings ---------------------------------------------------

    def list_files(self, batch_id: str) -> list[FileRef]:
        """Every physical file of a batch, sorted by :attr:`FileRef.sort_key`.

        Follows ``_links.next`` on every listing and descends into dataset files that
        are directories (each dataSetFileId is resolved once, so cycles end).

        Raises:
            InvalidResponse: malformed listing, looping pages, empty names, lengths
                that are not integers.
        """
        url = f"{self._base}{EXPORT}/batches/{quote(batch_id, safe='')}/files"
        pending = [
            (parsing.dataset_file_id(item, f"batch {batch_id}"), 1)
            for item in self._data_items(url)
        ]
        resolved: set[str] = set()
        files: dict[tuple[str, str], FileRef] = {}
        while pending:
            file_id, depth = pending.pop()
            if file_id in resolved:
                continue
            if depth > MAX_DEPTH:
                raise InvalidResponse(
                    f"batch {batch_id}: dataset files nest deeper than {MAX_DEPTH} "
                    f"directories (MAX_DEPTH) at {file_id}; giving up"
                )
            resolved.add(file_id)
            for item in self._data_items(self._file_url(file_id)):
                if parsing.is_physical_file(item):
                    ref = parsing.file_ref(file_id, item, self._file_url(file_id))
                    files.setdefault(ref.sort_key, ref)
                else:  # a directory of further dataset files
                    child = parsing.dataset_file_id(item, f"file {file_id}")
                    pending.append((child, depth + 1))
                if len(files) + len(pending) > MAX_LISTED:
                    raise InvalidResponse(
                        f"batch {batch_id}: lists more than {MAX_LISTED} files "
                        "(MAX_LISTED); giving up"
                    )
        if not files:
            self._check_empty(batch_id)
        return sorted(files.values(), key=lambda ref: ref.sort_key)

    def _check_empty(self, batch_id: str) -> None:
        """Refuse an empty listing of a batch whose Catalog entry counts data.

        Raises:
            InvalidResponse: the Catalog's metrics count files, records or bytes.
        """
        url = f"{self._base}{CATALOG}/batches/{quote(batch_id, safe='')}"
        try:
            body = self._client.get_json(url)
        except NotFoundError:
            return
        obj = body.get(batch_id) if isinstance(body, dict) else None
        metrics = obj.get("metrics") if isinstance(obj, dict) else None
        counted = {
            name: value
            for name, value in (metrics.items() if isinstance(metrics, dict) else ())
            if name in _COUNT_METRICS
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0
        }
        if counted:
            named = ", ".join(f"{k}={v}" for k, v in sorted(counted.items()))
            raise InvalidResponse(
                f"batch {batch_id}: Data Access lists no files, but its Catalog entry "
                f"counts {named}; not taken as an empty batch (a later try lists again)"
            )

    def list_failed_files(self, batch_id: str) -> list[FileRef]:
        """Files of a batch that failed ingestion (``/export/batches/{id}/failed``).

        ``dataset_file_id`` of these refs is the batch id (the listing has no
        dataSetFileId); ``url`` serves the bytes to :meth:`read_file`.

        Raises:
            InvalidResponse: malformed listing, empty names, invalid lengths.
        """
        url = f"{self._base}{EXPORT}/batches/{quote(batch_id, safe='')}/failed"
        files = [
            parsing.file_ref(batch_id, item, url) for item in self._data_items(url)
        ]
        return sorted(files, key=lambda ref: ref.sort_key)

    def _data_items(self, url: str) -> Iterator[dict[str, Any]]:
        """The ``data`` items of a Data Access listing, following ``_links.next``.

        Raises:
            InvalidResponse: a malformed page, a page that repeats one already read
                or adds no new item, or more than :data:`MAX_PAGES` pages.
            UntrustedLinkError: an ambiguous ``next`` link.
        """
        next_url: Optional[str] = f"{url}?limit={PAGE_SIZE}"
        seen_urls: set[str] = set()
        seen_items: set[str] = set()
        pages = 0
        while next_url is not None:
            where = describe("GET", next_url)
            pages += 1
            if next_url in seen_urls:
                raise InvalidResponse(f"{where}: paging loops")
            if pages > MAX_PAGES:
                raise InvalidResponse(
                    f"{where}: listing did not end after {MAX_PAGES} pages "
                    "(MAX_PAGES); giving up"
                )
            seen_urls.add(next_url)
            page = self._client.get_json(next_url)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
                raise InvalidResponse(f"{where}: no 'data' list of objects")
            before = len(seen_items)
            seen_items.update(_item_identity(item) for item in data)
            href = parsing.next_href(page)
            if pages > 1 and href and len(seen_items) == before:
                raise InvalidResponse(
                    f"{where}: a page adds no item the listing did not already "
                    "hold, and links to another; its paging does not end"
                )
            yield from data
            next_url = (
                self._client.on_platform(urljoin(next_url, href)) if href else None
            )

    def _file_url(self, file_id: str, path: Optional[str] = None) -> str:
        url = f"{self._base}{EXPORT}/files/{quote(file_id, safe='')}"
        return url if path is None else f"{url}?path={quote(path, safe='')}"

    # -- Data Access: bytes ------------------------------------------------------

    def read_file(
        self, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        """Stream a file's bytes from ``start`` to ``end`` (exclusive; None: the
        file's end) in pieces of at most 1 MiB.

        Each ``Range`` request asks for ``chunk_size`` bytes. When a request fails
        with a retryable error (short body, reset, 5xx, 429) it is retried under the
        retry policy from the last byte already yielded, so no byte is yielded twice.
        A body the server cut short after some progress (Adobe ends every answer at
        60 s) resumes at once; one cut by the request's total deadline counts as a
        failed try. A zero-length file (or ``start == file.length``) yields nothing
        and sends no request. Memory stays bounded by one piece.

        Raises:
            ConfigError: ``start`` outside ``[0, file.length]``, or ``end`` outside
                ``[start, file.length]``.
            IncompleteDownload: the body stayed short after every retry.
            InvalidResponse: the server reports a different length, ignored Range,
                sent more bytes than it announced, or encoded the bytes.
        """
        stop = check_range(file, start, end)
        url = self._client.on_platform(
            file.url or self._file_url(file.dataset_file_id, file.name)
        )
        pos = start
        while pos < stop:
            # One retry budget per range and per stretch without progress; each
            # attempt resumes at the current pos.
            for attempt in self._client.retrying():
                begun = pos
                try:
                    ranged = self._read_range(url, file, pos, stop)
                    with contextlib.closing(ranged) as body:
                        for piece in body:
                            pos += len(piece)
                            yield piece
                except RETRYABLE as exc:
                    if pos > begun and not (
                        isinstance(exc, DeadlineExceeded) or aborted()
                    ):
                        # Progress, then a break (a response cut at Adobe's 60 s
                        # limit, a reset): resume at once with a fresh budget.
                        logger.warning(
                            "%s: %s; resuming at byte %d", file.name, exc, pos
                        )
                        self._client.retried(f"{file.name}: {exc}", 0.0)
                        break
                    attempt.retry_state.set_exception(
                        (type(exc), exc, exc.__traceback__)
                    )
                else:
                    attempt.retry_state.set_result(None)
        if pos != stop:  # defensive: the loop above only ends at ``stop``
            raise IncompleteDownload(f"{file.name}: read to {pos}, not {stop}")

    def _read_range(
        self, url: str, file: FileRef, pos: int, stop: int
    ) -> Generator[bytes, None, None]:
        """One ranged GET from ``pos`` (before ``stop``); yields the body in pieces,
        checks its length."""
        last = min(pos + self.config.chunk_size, stop) - 1
        # identity: a compressed range would not match Content-Range's byte counts.
        headers = {"Range": f"bytes={pos}-{last}", "Accept-Encoding": "identity"}
        # The rate limiter's in-flight slot is held until the range is read (or
        # this generator is closed).
        with self._client.stream("GET", url, headers=headers) as exchange:
            response = exchange.response
            where = describe("GET", exchange.url)
            encoding = content_encoding(response)
            if encoding != "identity":
                raise InvalidResponse(
                    f"{where}: file bytes in encoding {encoding!r}; asked for "
                    "identity, and byte ranges of an encoded body cannot be checked"
                )
            expected = parsing.announced_bytes(
                response.status_code, response.headers, pos, file, where
            )
            closing = announced_length(response) is None  # ends when the server closes
            raw = response.raw
            # Read the socket ourselves in small pieces: urllib3 2 drops the bytes
            # of a read that ends early (it raises instead), and a body cut short is
            # exactly what must resume from its last byte. We check the length.
            raw.enforce_content_length = False
            size = min(PIECE_SIZE, self.config.chunk_size)
            received = 0
            with exchange.reading():
                while received < expected:
                    piece = raw.read(
                        min(size, expected - received), decode_content=False
                    )
                    if not piece:
                        break
                    received += len(piece)
                    self._client.bump("bytes", len(piece))
                    yield piece
                if (
                    received == expected
                    and closing
                    and raw.read(1, decode_content=False)
                ):
                    raise InvalidResponse(
                        f"{where}: body longer than the {expected} bytes announced"
                    )
            if received < expected:
                if exchange.watch.expired:
                    raise exchange.watch.error("GET", exchange.url)
                raise IncompleteDownload(
                    f"{where}: body ended after {received} of {expected} bytes"
                )

    def interrupt(self) -> int:
        """Cut every request in flight short now (an aborted run): their reads fail
        within moments instead of waiting for a slow server. Returns how many."""
        return self._client.interrupt()

    @property
    def rate_limiter(self) -> AdaptiveRateLimiter:
        """The limiter every request of this source goes through (for inspection)."""
        return self._client.limiter

    def counters(self) -> Mapping[str, int]:
        """Lifetime totals of every run together: ``requests`` sent, ``retries``,
        ``throttled`` (429 answers) and ``bytes`` of file content received. A run's
        own counts are in its :class:`~aep_extract.RunReport`."""
        return self._client.counters()

    def close(self) -> None:
        """Close the HTTP session if this source created it."""
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(platform_url={self.config.platform_url!r}, "
            f"org_id={self.config.org_id!r}, sandbox={self.config.sandbox!r})"
        )


def _item_identity(item: Mapping[str, Any]) -> str:
    """What tells two items of a Data Access listing apart."""
    return f"{item.get('dataSetFileId')!r}/{item.get('name')!r}"
