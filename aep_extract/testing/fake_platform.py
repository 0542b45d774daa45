"""A fake Adobe Experience Platform: IMS, Catalog and Data Access on 127.0.0.1.

One real HTTP server (stdlib ``ThreadingHTTPServer`` in a daemon thread, random port)
serves both the IMS token endpoint and the platform gateway, so a client pointed at
:attr:`FakeAepPlatform.url` for ``AEP_IMS_URL`` and ``AEP_PLATFORM_URL`` talks HTTP to
it exactly as it would to Adobe::

    with FakeAepPlatform.generate(seed=7) as platform:
        source = AepSource.from_env(platform.env())
        ...
        assert copied == platform.expected_files(dataset, start_ms, end_ms)

The Catalog can change while it serves, as days pass on a real one:
:meth:`FakeAepPlatform.add_batches`, :meth:`~FakeAepPlatform.set_batch_status` and
:meth:`~FakeAepPlatform.replay` (with :meth:`~FakeAepPlatform.make_batches` for fresh
batches) each take effect at once and atomically.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, ClassVar, Optional

import attrs

from ..config import DEFAULT_SCOPES
from . import _fake_generate as gen
from ._fake_api import Reorder
from ._fake_data import FakeBatch, FakeFile
from ._fake_faults import FaultControl
from ._fake_gateway import IMS_TOKEN_PATH, FakeGateway, RateLimit
from ._fake_http import (
    ByteCount,
    FakeHttpServer,
    FakeRequest,
    FakeResponse,
    limit_bandwidth,
)
from ._fake_routes import FakeServices
from .faults import FaultPlan

logger = logging.getLogger(__name__)

FaultResponse = tuple[int, Mapping[str, str], bytes]
"""What a fault answers instead of the platform: status, headers, body."""
Fault = Callable[[FakeRequest], Optional[FaultResponse]]
"""A fault hook: return a response to send, or None to let the request through."""

EXPORTABLE = ("success", "active")


class FakeAepPlatform:
    """A fake AEP serving fixed datasets and batches over real HTTP.

    Args:
        datasets: dataset id -> Catalog fields to show (``name`` at least); the
            other dataset fields (``viewId``, ``files``, ``created`` ...) are filled in.
        batches: every batch of every dataset.
        client_id: the valid client id (also the required ``x-api-key``).
        client_secret: the valid client secret.
        org_id: the required ``x-gw-ims-org-id``.
        sandbox: the required ``x-sandbox-name``.
        token_ttl: lifetime of an issued token in seconds (``expires_in``).
        scopes: the ``AEP_SCOPES`` value of :meth:`env`.
        faults: a fault plan to run from the start (see :meth:`set_faults`).
        rate_limit: the gateway's request rate limit in requests per second, over
            all clients and platform calls (IMS token requests are not limited):
            a token bucket holding ``rate_burst`` requests; a call that finds it
            empty is answered 429 with ``Retry-After`` (whole seconds, at least 1)
            and counted in :attr:`rate_limited`. None: no limit.
        rate_burst: requests the bucket holds, so many go at once after a lull;
            None for a tenth of a second's worth (at least 1).
        bandwidth: the most bytes per second each connection carries of a file's
            content (``GET /files/{id}?path=...`` answers; listings and Catalog
            calls are not slowed), like a WAN link per TCP connection; None: as
            fast as loopback goes. A fault plan's ``bandwidth`` rule can lower
            it further.

    Raises:
        ValueError: a batch of an unknown dataset, duplicate batch or
            dataSetFileIds, a ``rate_limit`` that is not a positive number, a
            ``rate_burst`` below 1 (or without a ``rate_limit``), or a
            ``bandwidth`` that is not a positive number.
    """

    DEMO_DATASET_ID: ClassVar[str] = gen.DEMO_DATASET_ID
    """The main dataset of :meth:`generate`."""
    DEMO_OTHER_DATASET_ID: ClassVar[str] = gen.DEMO_OTHER_DATASET_ID
    """The second dataset of :meth:`generate`, whose batches are never to be copied."""
    DEMO_START: ClassVar[str] = gen.DEMO_START
    """Start (inclusive) of the window holding :meth:`generate`'s main batches."""
    DEMO_END: ClassVar[str] = gen.DEMO_END
    """End (exclusive) of that window."""
    LAZY_FILE_SIZE: ClassVar[int] = gen.LAZY_FILE_SIZE
    """:meth:`generate` makes a larger file's bytes as it serves them."""

    def __init__(
        self,
        datasets: Mapping[str, Mapping[str, Any]],
        batches: Iterable[FakeBatch] = (),
        *,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",
        org_id: str = "FAKEORG@AdobeOrg",
        sandbox: str = "prod",
        token_ttl: int = 86399,
        scopes: str = DEFAULT_SCOPES,
        faults: Optional[FaultPlan] = None,
        rate_limit: Optional[float] = None,
        rate_burst: Optional[float] = None,
        bandwidth: Optional[float] = None,
    ) -> None:
        if bandwidth is not None and not (
            isinstance(bandwidth, (int, float))
            and not isinstance(bandwidth, bool)
            and 0 < bandwidth < math.inf
        ):
            raise ValueError(
                f"bandwidth must be a positive number of bytes per second, "
                f"got {bandwidth!r}"
            )
        self._bandwidth = bandwidth
        self._services = FakeServices(datasets, batches, org_id=org_id, sandbox=sandbox)
        if rate_limit is None and rate_burst is not None:
            raise ValueError("rate_burst needs a rate_limit")
        limit = None if rate_limit is None else RateLimit(rate_limit, rate_burst)
        self._gateway = FakeGateway(
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandbox=sandbox,
            token_ttl=token_ttl,
            rate_limit=limit,
        )
        self.scopes = scopes
        self._lock = threading.Lock()
        self._requests: list[FakeRequest] = []
        self._faults = FaultControl(sandbox=sandbox)
        self._server: Optional[FakeHttpServer] = None
        self._served = ByteCount()
        self._faults.set_plan(faults)

    @classmethod
    def generate(
        cls,
        seed: int = 7,
        *,
        dataset_id: str = gen.DEMO_DATASET_ID,
        other_dataset_id: str = gen.DEMO_OTHER_DATASET_ID,
        start: gen.Moment = gen.DEMO_START,
        end: gen.Moment = gen.DEMO_END,
        batches: int = 12,
        other_batches: int = 3,
        files_per_batch: int = 3,
        files_per_dataset_file: int = 1,
        max_file_size: int = 64 * 1024,
        large_file_size: int = 5 * 1024 * 1024,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",
        org_id: str = "FAKEORG@AdobeOrg",
        sandbox: str = "prod",
        token_ttl: int = 86399,
        faults: Optional[FaultPlan] = None,
        rate_limit: Optional[float] = None,
        rate_burst: Optional[float] = None,
        bandwidth: Optional[float] = None,
    ) -> FakeAepPlatform:
        """A deterministic demo platform: the same seed gives the same ids and bytes.

        ``batches`` main-dataset batches spread over ``[start, end)``, the first exactly
        at ``start``, with mixed statuses (success, active, failed with failed files
        and errors, loading with files, aborted), zero-byte files, one file of
        ``large_file_size`` bytes (0 leaves it out; above
        :attr:`LAZY_FILE_SIZE` its content is
        :class:`~aep_extract.testing.GeneratedBytes`, made as it is served, so
        a file of 4 GiB costs no memory), a directory-type dataSetFileId
        with nested children and names with spaces and ``+``. Also a batch 1 ms
        before ``start``, one exactly at ``end``, and ``other_batches`` batches of
        ``other_dataset_id`` inside the window. Ordinary batches have
        ``files_per_batch`` dataSetFileIds of ``files_per_dataset_file`` files of
        1..``max_file_size`` bytes. The defaults stay around 6 MiB in all.

        Args:
            seed: seed of the only random generator used.
            dataset_id: id of the main dataset.
            other_dataset_id: id of the second dataset.
            start: window start (ISO 8601 with offset, aware datetime or epoch ms).
            end: window end, same forms.
            batches: main-dataset batches inside the window.
            other_batches: batches of the second dataset.
            files_per_batch: dataSetFileIds of an ordinary batch (more than 100
                exercises paging of ``/batches/{id}/files``).
            files_per_dataset_file: physical files per ordinary dataSetFileId (more
                than 100 exercises paging of ``/files/{id}``).
            max_file_size: largest ordinary file in bytes.
            large_file_size: size of the one large file.
            client_id: see the class arguments.
            client_secret: see the class arguments.
            org_id: see the class arguments.
            sandbox: see the class arguments.
            token_ttl: see the class arguments.
            faults: see the class arguments.
            rate_limit: see the class arguments.
            rate_burst: see the class arguments.
            bandwidth: see the class arguments.

        Raises:
            ValueError: counts or sizes out of range, a window too short, or a
                rate limit or bandwidth out of range.
        """
        datasets, all_batches = gen.generate_catalog(
            seed,
            dataset_id=dataset_id,
            other_dataset_id=other_dataset_id,
            start=start,
            end=end,
            batches=batches,
            other_batches=other_batches,
            files_per_batch=files_per_batch,
            files_per_dataset_file=files_per_dataset_file,
            max_file_size=max_file_size,
            large_file_size=large_file_size,
        )
        return cls(
            datasets,
            all_batches,
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandbox=sandbox,
            token_ttl=token_ttl,
            faults=faults,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            bandwidth=bandwidth,
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeAepPlatform:
        """Start serving on a random port of 127.0.0.1; returns self.

        Raises:
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("the fake AEP platform is already running")
        self._server = FakeHttpServer(self._dispatch, self._record, self._served)
        self._server.start()
        logger.info("fake AEP platform serving at %s", self._server.url)
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (no-op when not running)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            logger.info("fake AEP platform at %s stopped", server.url)

    @property
    def running(self) -> bool:
        """Whether the server is started."""
        return self._server is not None

    def __enter__(self) -> FakeAepPlatform:
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
        return (
            f"FakeAepPlatform({where}, datasets={len(self.dataset_ids)}, "
            f"batches={len(self.batches)})"
        )

    # -- credentials ---------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The valid client id, also the required ``x-api-key``."""
        return self._gateway.client_id

    @property
    def client_secret(self) -> str:
        """The valid client secret."""
        return self._gateway.client_secret

    @property
    def org_id(self) -> str:
        """The required ``x-gw-ims-org-id``."""
        return self._gateway.org_id

    @property
    def sandbox(self) -> str:
        """The required ``x-sandbox-name``."""
        return self._gateway.sandbox

    @property
    def token_ttl(self) -> int:
        """Lifetime of issued tokens in seconds."""
        return self._gateway.token_ttl

    # -- what clients need -----------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of both IMS and the platform, ``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: not started.
        """
        if self._server is None:
            raise RuntimeError("the fake AEP platform is not running; call start()")
        return self._server.url

    def env(self) -> dict[str, str]:
        """The ``AEP_*`` environment that points a client at this platform."""
        return {
            "AEP_CLIENT_ID": self.client_id,
            "AEP_CLIENT_SECRET": self.client_secret,
            "AEP_ORG_ID": self.org_id,
            "AEP_SANDBOX": self.sandbox,
            "AEP_SCOPES": self.scopes,
            "AEP_PLATFORM_URL": self.url,
            "AEP_IMS_URL": self.url,
        }

    def auth_headers(self) -> dict[str, str]:
        """Valid platform headers with a freshly issued token (counts as issued)."""
        return {
            "Authorization": f"Bearer {self._gateway.issue_token()}",
            "x-api-key": self.client_id,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": self.sandbox,
        }

    # -- the data --------------------------------------------------------------------

    @property
    def dataset_ids(self) -> list[str]:
        """Ids of every dataset."""
        return list(self._services.datasets)

    @property
    def batches(self) -> list[FakeBatch]:
        """Every batch, ordered by created time, then id."""
        return self._services.batches_of()

    def batches_of(self, dataset_id: str) -> list[FakeBatch]:
        """Batches of one dataset (any status), ordered by created time, then id."""
        return self._services.batches_of(dataset_id)

    def get_batch(self, batch_id: str) -> FakeBatch:
        """The batch with that id, as it is now.

        Raises:
            KeyError: no such batch.
        """
        return self._services.get(batch_id)

    def expected_files(
        self,
        dataset_id: str,
        start_ms: int,
        end_ms: int,
        statuses: Sequence[str] = EXPORTABLE,
    ) -> list[tuple[FakeBatch, str, FakeFile]]:
        """What a correct extraction of ``[start_ms, end_ms)`` copies, as of now.

        Returns:
            ``(batch, leaf dataSetFileId, file)`` for batches of the dataset with a
            status in ``statuses`` and ``created`` in the window, ordered by created
            time then batch id; within a batch by leaf dataSetFileId, then name.
        """
        return [
            (batch, leaf_id, file)
            for batch in self.batches_of(dataset_id)
            if batch.status in statuses and start_ms <= batch.created_ms < end_ms
            for leaf_id, file in batch.leaf_files()
        ]

    # -- changing the Catalog ----------------------------------------------------------

    def add_batches(self, batches: Iterable[FakeBatch]) -> None:
        """Add batches to the served Catalog (safe while serving).

        All or nothing: the batches appear together, or none does.

        Raises:
            ValueError: a batch id or dataSetFileId already present (or repeated),
                or a batch of an unknown dataset; nothing is added then.
        """
        self._services.add(batches)

    def set_batch_status(self, batch_id: str, status: str) -> FakeBatch:
        """Change a batch's Catalog status (safe while serving); returns the batch.

        Its files stay: a ``loading`` batch that becomes ``success`` serves them.

        Raises:
            KeyError: no such batch.
            ValueError: not a Catalog status.
        """
        return self._services.set_status(batch_id, status)

    def replay(
        self,
        predecessor_ids: Sequence[str],
        batch: FakeBatch,
        *,
        reason: str = "consolidation",
        predecessor_status: Optional[str] = "inactive",
    ) -> FakeBatch:
        """Add ``batch`` as the replay of existing batches, as a consolidation does.

        In one atomic step, ``batch`` is added with ``replay`` set to
        ``{"predecessors": [...], "reason": reason, "predecessorListingType":
        "IMMEDIATE"}``, and each predecessor gets the tag ``acp_successor:
        [batch id]`` and, unless ``predecessor_status`` is None, that status. The
        predecessors keep their files.

        Args:
            predecessor_ids: ids of the replaced batches, of ``batch``'s dataset.
            batch: the new batch (any ``replay`` it has is replaced).
            reason: the ``replay.reason``.
            predecessor_status: the predecessors' new status; None keeps theirs.

        Returns:
            The added batch, with its ``replay``.

        Raises:
            KeyError: an unknown predecessor.
            ValueError: no predecessors (or a string of one), a repeated one, one
                of another dataset, ``batch`` among them, an unknown status, or
                ``batch`` clashing with a present batch; nothing changes then.
        """
        return self._services.replay(predecessor_ids, batch, reason, predecessor_status)

    @staticmethod
    def make_batches(
        dataset_id: str,
        start: gen.Moment,
        end: gen.Moment,
        count: int,
        *,
        seed: int,
        files_per_batch: int = 2,
        status: str = "success",
        max_file_size: int = 64 * 1024,
    ) -> list[FakeBatch]:
        """Fresh batches to add later (:meth:`add_batches`, :meth:`replay`).

        ``count`` batches created over ``[start, end)``, the first exactly at
        ``start``, each with ``files_per_batch`` dataSetFileIds of one file of
        1..``max_file_size`` bytes, whatever the status (so a ``loading`` batch
        has files to serve once it is ``success``). Ids, times and bytes are drawn
        from ``seed``, ``dataset_id`` and the window: the same arguments give the
        same batches, and the ids never collide with :meth:`generate`'s. Adding
        the same batches twice fails in :meth:`add_batches`.

        Args:
            dataset_id: the dataset of the batches (it must exist when added).
            start: window start (ISO 8601 with offset, aware datetime or epoch ms).
            end: window end (exclusive), same forms.
            count: how many batches.
            seed: seed of the random generator.
            files_per_batch: dataSetFileIds per batch (0 for empty batches).
            status: the batches' Catalog status.
            max_file_size: largest file in bytes.

        Raises:
            ValueError: a count or size out of range, an unknown status, or a
                window shorter than one millisecond per batch.
        """
        return gen.make_batches(
            dataset_id,
            start,
            end,
            count,
            seed=seed,
            files_per_batch=files_per_batch,
            status=status,
            max_file_size=max_file_size,
        )

    # -- observation and faults --------------------------------------------------------

    @property
    def requests(self) -> list[FakeRequest]:
        """A snapshot of every answered request, oldest first (thread-safe)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    @property
    def bandwidth(self) -> Optional[float]:
        """Each connection's limit on file content, bytes per second (None: none)."""
        return self._bandwidth

    @property
    def bytes_served(self) -> int:
        """Bytes of file content written to clients since the platform was made.

        Counted (thread-safe) as the bodies of Data Access file answers
        (``GET /files/{id}?path=...``, whole or ranged) are written to the
        connections, so a body cut short, by a fault or by a client that hung
        up, counts only what was written. Listings, Catalog calls and HEAD
        answers count nothing.
        """
        return self._served.value

    def reset_bytes_served(self) -> int:
        """Start :attr:`bytes_served` again from 0; returns the count before."""
        return self._served.reset()

    @property
    def tokens_issued(self) -> int:
        """Number of tokens issued so far."""
        return self._gateway.tokens_issued

    @property
    def rate_limited(self) -> int:
        """Platform calls the ``rate_limit`` answered 429 so far (0 without one)."""
        limit = self._gateway.rate_limit
        return 0 if limit is None else limit.refused

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: their next platform call gets 401."""
        self._gateway.expire_tokens()

    def add_fault(self, fault: Fault) -> None:
        """Register a fault hook, consulted (in order) before any routing.

        The first hook that returns ``(status, headers, body)`` answers the request;
        hooks returning None let it through. Hooks run on server threads.
        """
        self._faults.add_hook(fault)

    def clear_faults(self) -> None:
        """Remove every fault hook and the fault plan."""
        self._faults.clear()

    def set_faults(self, plan: Optional[FaultPlan]) -> None:
        """Run ``plan`` from now on, in place of the current one (None: no plan).

        Fault hooks (:meth:`add_fault`) are consulted first; a request they let
        through meets the plan. See :class:`~aep_extract.testing.FaultPlan`.
        """
        self._faults.set_plan(plan)

    @property
    def fault_plan(self) -> Optional[FaultPlan]:
        """The fault plan in force, if any."""
        return self._faults.plan

    @property
    def faults_served(self) -> dict[str, int]:
        """Faults the fault plans served since the platform was made, by kind.

        Every kind of :data:`~aep_extract.testing.faults.FAULT_KINDS` is a key.
        """
        return self._faults.served

    # -- serving ---------------------------------------------------------------------

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _dispatch(self, request: FakeRequest, base_url: str) -> FakeResponse:
        def serve(changed: FakeRequest, reorder: Optional[Reorder]) -> FakeResponse:
            return self._serve(changed, base_url, reorder)

        response = self._faults.handle(request, serve, self._gateway.expire_tokens)
        if self._bandwidth is not None and response.file_bytes:
            response = limit_bandwidth(response, self._bandwidth)
        return response

    def _serve(
        self, request: FakeRequest, base_url: str, reorder: Optional[Reorder]
    ) -> FakeResponse:
        if request.path == IMS_TOKEN_PATH:
            return self._gateway.token_endpoint(request)
        response = self._gateway.check(request) or self._services.dispatch(
            request, base_url, reorder
        )
        headers = {**response.headers, "x-request-id": str(uuid.uuid4())}
        return attrs.evolve(response, headers=headers)
