"""Configuration objects: frozen, validated, defaults in ``DEFAULT_*`` constants."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import attrs

from . import _validators as v
from .errors import ConfigError

DEFAULT_PLATFORM_URL = "https://platform.adobe.io"
DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_SANDBOX = "prod"
DEFAULT_SCOPES = (
    "openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"
)
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
"""Bytes per ranged GET: small enough to finish far inside Adobe's 60 s limit."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_REQUEST_TIMEOUT = 120.0
"""Total seconds one platform request may take, body included: twice Adobe's 60 s
response limit."""
DEFAULT_TOKEN_TIMEOUT = 30.0
"""Total seconds to obtain an IMS token, retries included."""
DEFAULT_TOKEN_REFRESH_MARGIN = 300.0
"""Seconds before expiry at which a cached IMS token is replaced."""

DEFAULT_RETRY_ATTEMPTS = 8
DEFAULT_RETRY_INITIAL_WAIT = 0.5
DEFAULT_RETRY_MAX_WAIT = 60.0

DEFAULT_WORKERS = 8
"""Files copied at once (threads of the default scheduler)."""
DEFAULT_MAX_REQUESTS_PER_SECOND = 2000.0
"""Safety ceiling of the adaptive request rate when ``max_requests_per_second`` is
None: the rate probes upwards towards it until the platform pushes back."""
DEFAULT_START_REQUESTS_PER_SECOND = 50.0
"""The adaptive request rate starts here (or at the ceiling, if that is lower)."""
IN_FLIGHT_PER_WORKER = 2
"""Platform requests open at once per worker, by default (a download and a listing)."""
DEFAULT_MAX_IN_FLIGHT = IN_FLIGHT_PER_WORKER * DEFAULT_WORKERS
"""Platform requests open at once per source with the default workers (16)."""
POOL_MARGIN = 4
DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per part of a multi-stream copy (s3transfer's ``multipart_chunksize``)."""
PARTS_PER_WORKER = 2
"""Parts in memory at once per worker, by default, in all and per file."""
MAX_FILE_PARTS = 10_000
"""Most parts of one file (S3's limit): a larger file gets larger parts."""
"""Connections a pool keeps beyond the requests that share it (token refreshes,
planning, the engine's own calls)."""

DEFAULT_LEASE_SECONDS = 300.0
DEFAULT_UNIT_ATTEMPTS = 3
DEFAULT_UNIT_CRASHES = 10
DEFAULT_SAFETY_LAG_SECONDS = 900.0
"""How far behind now an incremental run's window ends by default (15 minutes)."""
DEFAULT_KEY_TEMPLATE = (
    "{dataset_id}/date={date}/batch={batch_id}/{dataset_file_id}/{name}"
)
DEFAULT_MANIFEST_TEMPLATE = "{dataset_id}/date={date}/batch={batch_id}/_manifest.json"


@attrs.frozen(kw_only=True)
class RetryConfig:
    """How requests are retried: exponential backoff with full jitter, capped.

    Attributes:
        attempts: tries per request, the first included.
        initial_wait: the backoff's first ceiling in seconds (doubles each retry).
        max_wait: cap of a single wait, also for a server's ``Retry-After``.
    """

    attempts: int = attrs.field(default=DEFAULT_RETRY_ATTEMPTS, validator=v.ge(1))
    initial_wait: float = attrs.field(
        default=DEFAULT_RETRY_INITIAL_WAIT, validator=v.ge(0)
    )
    max_wait: float = attrs.field(default=DEFAULT_RETRY_MAX_WAIT, validator=v.ge(0))


@attrs.frozen(kw_only=True)
class ConcurrencyConfig:
    """Every concurrency knob in one place, in the manner of s3transfer's
    ``TransferConfig``: what is left unset derives from ``workers``.

    ============================ ===================== ==============================
    Effective value              Default (8 workers)   What it bounds
    ============================ ===================== ==============================
    ``workers``                  8                     files copied at once (threads
                                                       of the default scheduler)
    :attr:`in_flight`            2 x workers (16)      AEP requests open at once
    :attr:`requests_per_second`  2000                  safety ceiling of the AEP
                                                       request rate: it starts at
                                                       50 and probes upwards until
                                                       429, 503 or slower answers
    :attr:`http_connections`     in_flight + 4 (20)    the source's urllib3 pool
                                                       (``maxsize`` per host)
    :attr:`sink_connections`     workers + 4 (12)      the connection pool of the
                                                       client an S3 or Azure sink
                                                       builds
    :attr:`part_bytes`           8 MiB                 bytes per part of a
                                                       multi-stream copy (raised to
                                                       the sink's minimum, S3 5 MiB,
                                                       and so that a file has at
                                                       most 10,000 parts)
    :attr:`threshold`            2 x part_bytes        the size from which a file is
                                 (16 MiB)              copied as parts in parallel
    :attr:`parts_per_file`       2 x workers (16)      parts of one file in memory
                                                       at once
    :attr:`parts_in_flight`      2 x workers (16)      parts of all files in memory
                                                       at once: memory is bounded by
                                                       this x part size (128 MiB)
    ============================ ===================== ==============================

    A part is in memory from its ranged read until the file's SHA-256 has taken it
    in (parts are hashed in order, so a part that arrives early waits for the ones
    before it): the parts counted above are those in flight and those waiting.

    A pool is never smaller than the requests that share it: the source's requests
    are bounded by ``in_flight``, a cloud sink's by the workers (each writer sends one
    request at a time: parts of one object go up one after another, so memory stays
    at one part per worker). A pool size below that is a :class:`ConfigError`.

    Pass one object everywhere: ``ExtractorConfig(concurrency=...)`` (the default
    scheduler), ``AepConfig(concurrency=...)`` (or ``HttpAepSource.from_env(
    concurrency=...)``) and ``S3Sink(..., concurrency=...)``.

    Attributes:
        workers: files copied at once. CLI: ``--workers``.
        max_in_flight: AEP requests open at once per source (a download counts until
            its ranged response has been read); None derives it. CLI:
            ``--max-in-flight``; env: ``AEP_MAX_IN_FLIGHT``.
        max_requests_per_second: safety ceiling of the AEP request rate; None
            means 2000. The rate starts at 50 (or at the ceiling, if lower),
            doubles every second while requests succeed, is cut by every round of
            429 (or 503) answers or rising latency, and then stays just below the
            limit it found, probing above it now and then (see :doc:`/concepts`).
            CLI: ``--max-rps``; env: ``AEP_MAX_RPS``.
        http_pool_size: connections per host of the source's HTTP session; None
            derives it.
        sink_pool_size: connections of the client a cloud sink (S3, Azure)
            builds; None derives it.
        part_size: bytes per part of a multi-stream copy; None means 8 MiB.
        multistream_threshold: bytes from which a file is copied as parts fetched
            and written in parallel (where the sink can: S3, local, memory; Azure
            copies every file in one stream); None means twice the part size.
        max_parts_per_file: parts of one file in memory at once; None derives it.
        max_parts_in_flight: parts of all files in memory at once; None derives
            it.

    Raises:
        ConfigError: a value is not a positive integer (a positive number for the
            rate), or a pool is smaller than the requests that share it.
    """

    workers: int = DEFAULT_WORKERS
    max_in_flight: Optional[int] = None
    max_requests_per_second: Optional[float] = None
    http_pool_size: Optional[int] = None
    sink_pool_size: Optional[int] = None
    part_size: Optional[int] = None
    multistream_threshold: Optional[int] = None
    max_parts_per_file: Optional[int] = None
    max_parts_in_flight: Optional[int] = None

    def __attrs_post_init__(self) -> None:
        _check_count("workers", self.workers)
        for name in (
            "max_in_flight",
            "http_pool_size",
            "sink_pool_size",
            "part_size",
            "multistream_threshold",
            "max_parts_per_file",
            "max_parts_in_flight",
        ):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        rate = self.max_requests_per_second
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ConfigError(
                f"max_requests_per_second must be a positive number, got {rate!r}"
            )
        if self.http_connections < self.in_flight:
            raise ConfigError(
                f"http_pool_size {self.http_pool_size} is below max_in_flight "
                f"{self.in_flight}: requests would wait for a connection"
            )
        if self.sink_connections < self.workers:
            raise ConfigError(
                f"sink_pool_size {self.sink_pool_size} is below workers "
                f"{self.workers}: writers would wait for a connection"
            )

    @property
    def part_bytes(self) -> int:
        """Bytes per part of a multi-stream copy, before a sink's minimum and the
        10,000-part limit (see :meth:`part_size_for`)."""
        return self.part_size if self.part_size is not None else DEFAULT_PART_SIZE

    @property
    def threshold(self) -> int:
        """Bytes from which a file is copied as parts in parallel."""
        if self.multistream_threshold is not None:
            return self.multistream_threshold
        return 2 * self.part_bytes

    @property
    def parts_per_file(self) -> int:
        """Parts of one file in memory at once."""
        if self.max_parts_per_file is not None:
            return self.max_parts_per_file
        return PARTS_PER_WORKER * self.workers

    @property
    def parts_in_flight(self) -> int:
        """Parts of all files in memory at once."""
        if self.max_parts_in_flight is not None:
            return self.max_parts_in_flight
        return PARTS_PER_WORKER * self.workers

    def part_size_for(self, size: int, minimum: int = 1) -> int:
        """The part size of a file of ``size`` bytes: :attr:`part_bytes`, at least
        ``minimum`` (the sink's), grown to whole MiB so that the file has at most
        10,000 parts."""
        chosen = max(self.part_bytes, minimum)
        if -(-size // chosen) > MAX_FILE_PARTS:
            mib = 1024 * 1024
            needed = -(-size // MAX_FILE_PARTS)
            chosen = -(-needed // mib) * mib
        return chosen

    @property
    def in_flight(self) -> int:
        """AEP requests open at once per source."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return IN_FLIGHT_PER_WORKER * self.workers

    @property
    def requests_per_second(self) -> float:
        """Safety ceiling of the AEP request rate."""
        if self.max_requests_per_second is not None:
            return float(self.max_requests_per_second)
        return DEFAULT_MAX_REQUESTS_PER_SECOND

    @property
    def http_connections(self) -> int:
        """urllib3 ``maxsize``: connections the source's session keeps per host."""
        if self.http_pool_size is not None:
            return self.http_pool_size
        return self.in_flight + POOL_MARGIN

    @property
    def sink_connections(self) -> int:
        """Connections of the client a cloud sink builds (botocore's
        ``max_pool_connections`` for S3, the urllib3 pool for Azure)."""
        if self.sink_pool_size is not None:
            return self.sink_pool_size
        return self.workers + POOL_MARGIN


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer of 1 or more, got {value!r}")


def _positive_rate(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"{attribute.name} must be a positive number of requests per second, "
            f"got {value!r}"
        )


def _positive_int(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{attribute.name} must be an integer of 1 or more, got {value!r}"
        )


def _http_url(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An http(s) URL with a host, and nothing after its path (credentials go there)."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or "\\" in value
        or any(ch.isspace() for ch in value)
    ):
        raise ConfigError(
            f"{attribute.name} must be an http(s) URL like https://host[:port][/path], "
            f"got {value!r}"
        )


@attrs.frozen(kw_only=True)
class AepConfig:
    """Where and how to reach AEP. The secret never appears in the repr.

    Use :meth:`from_env` to read the ``AEP_*`` environment variables.

    Attributes:
        client_id: the OAuth Server-to-Server credential's client id (also the API
            key).
        client_secret: its secret; never shown in the repr, logs or errors.
        org_id: the IMS organization id (``...@AdobeOrg``).
        scopes: the scopes requested with the token.
        sandbox: the sandbox name sent as ``x-sandbox-name``.
        platform_url: base URL of the platform gateway.
        ims_url: base URL of Adobe IMS.
        chunk_size: bytes asked for by one ``Range`` request.
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for the next bytes of an answer.
        request_timeout: total seconds a platform request may take, from sending
            it to the last byte of its answer (a body trickling in is cut off here;
            a cut download resumes from its last byte like any other).
        token_timeout: total seconds to obtain an IMS token, retries included;
            after that the run stops with
            :class:`~aep_extract.errors.TokenUnavailable`.
        token_refresh_margin: seconds before expiry at which a token is replaced.
        verify_tls: check TLS certificates (leave on outside tests).
        retry: attempts and backoff of failed requests.
        concurrency: requests in flight, request rate and connection pool (see
            :class:`ConcurrencyConfig`); :attr:`effective_concurrency` is what
            the source uses.
        max_requests_per_second: alias of ``concurrency.max_requests_per_second``
            that wins over it when set; :meth:`from_env` sets it from
            ``AEP_MAX_RPS``. Prefer ``concurrency`` in code.
        max_in_flight: alias of ``concurrency.max_in_flight`` that wins over it
            when set; :meth:`from_env` sets it from ``AEP_MAX_IN_FLIGHT``. Prefer
            ``concurrency`` in code.
    """

    client_id: str = attrs.field(validator=v.min_len(1))
    client_secret: str = attrs.field(repr=False, validator=v.min_len(1))
    org_id: str = attrs.field(validator=v.min_len(1))
    scopes: str = DEFAULT_SCOPES
    sandbox: str = DEFAULT_SANDBOX
    platform_url: str = attrs.field(default=DEFAULT_PLATFORM_URL, validator=_http_url)
    ims_url: str = attrs.field(default=DEFAULT_IMS_URL, validator=_http_url)
    chunk_size: int = attrs.field(default=DEFAULT_CHUNK_SIZE, validator=v.ge(1))
    connect_timeout: float = attrs.field(
        default=DEFAULT_CONNECT_TIMEOUT, validator=v.gt(0)
    )
    read_timeout: float = attrs.field(default=DEFAULT_READ_TIMEOUT, validator=v.gt(0))
    request_timeout: float = attrs.field(
        default=DEFAULT_REQUEST_TIMEOUT, validator=v.gt(0)
    )
    token_timeout: float = attrs.field(default=DEFAULT_TOKEN_TIMEOUT, validator=v.gt(0))
    token_refresh_margin: float = attrs.field(
        default=DEFAULT_TOKEN_REFRESH_MARGIN, validator=v.ge(0)
    )
    verify_tls: bool = True
    retry: RetryConfig = attrs.field(factory=RetryConfig)
    max_requests_per_second: Optional[float] = attrs.field(
        default=None, validator=_positive_rate
    )
    max_in_flight: Optional[int] = attrs.field(
        default=None, validator=v.optional(_positive_int)
    )
    concurrency: ConcurrencyConfig = attrs.field(factory=ConcurrencyConfig)

    def __attrs_post_init__(self) -> None:
        self.effective_concurrency  # noqa: B018 - ConfigError now, not at first use

    @property
    def effective_concurrency(self) -> ConcurrencyConfig:
        """``concurrency`` with ``max_requests_per_second`` and ``max_in_flight``
        applied when they are set.

        Raises:
            ConfigError: the aliases make the configuration invalid (e.g.
                ``max_in_flight`` above ``concurrency.http_pool_size``).
        """
        chosen = self.concurrency
        if self.max_requests_per_second is not None:
            chosen = attrs.evolve(
                chosen, max_requests_per_second=self.max_requests_per_second
            )
        if self.max_in_flight is not None:
            chosen = attrs.evolve(chosen, max_in_flight=self.max_in_flight)
        return chosen

    @classmethod
    def from_env(
        cls, env: Optional[Mapping[str, str]] = None, **overrides: object
    ) -> AepConfig:
        """Read ``AEP_CLIENT_ID``, ``AEP_CLIENT_SECRET``, ``AEP_ORG_ID`` (required),
        ``AEP_SCOPES``, ``AEP_SANDBOX``, ``AEP_PLATFORM_URL``, ``AEP_IMS_URL``,
        ``AEP_MAX_RPS`` and ``AEP_MAX_IN_FLIGHT``.

        Args:
            env: the variables to read (``os.environ`` by default); empty values
                count as unset.
            **overrides: field values that win over the environment.

        Raises:
            ConfigError: a required variable is missing or a value is invalid.
        """
        env = os.environ if env is None else env
        missing = [
            name
            for name in ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID")
            if not env.get(name)
        ]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
        values: dict[str, object] = {
            "client_id": env["AEP_CLIENT_ID"],
            "client_secret": env["AEP_CLIENT_SECRET"],
            "org_id": env["AEP_ORG_ID"],
            "scopes": env.get("AEP_SCOPES") or DEFAULT_SCOPES,
            "sandbox": env.get("AEP_SANDBOX") or DEFAULT_SANDBOX,
            "platform_url": env.get("AEP_PLATFORM_URL") or DEFAULT_PLATFORM_URL,
            "ims_url": env.get("AEP_IMS_URL") or DEFAULT_IMS_URL,
        }
        max_rps = env.get("AEP_MAX_RPS", "").strip()
        if max_rps:
            values["max_requests_per_second"] = _env_number(
                "AEP_MAX_RPS", max_rps, float, "a positive number"
            )
        max_in_flight = env.get("AEP_MAX_IN_FLIGHT", "").strip()
        if max_in_flight:
            values["max_in_flight"] = _env_number(
                "AEP_MAX_IN_FLIGHT", max_in_flight, int, "an integer of 1 or more"
            )
        values.update(overrides)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid AEP configuration: {exc}") from None


def _key_template(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    from .layout import check_template  # layout reads this module's defaults

    check_template(value, manifest=attribute.name == "manifest_template")


def _env_number(
    name: str, text: str, kind: Callable[[str], float], wanted: str
) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be {wanted}, got {text!r}")
    return value


@attrs.frozen(kw_only=True)
class ExtractorConfig:
    """How the extractor plans, leases, retries and lays out its output.

    Attributes:
        lease_seconds: how long a claimed unit stays ours without renewal; renewed
            every third of it while the unit is worked on.
        unit_attempts: failed attempts (errors) after which a unit is marked Failed.
        unit_crashes: lease takeovers after which a unit is marked Failed instead
            of claimed again: its workers died or hung that often while copying
            it (killed, out of memory, a timeout), so it likely kills them. A
            graceful stop counts neither an attempt nor a crash.
        files_per_unit: split batches with more files into offset ranges of this many
            files (lists every batch's files while planning); None keeps a batch whole.
        key_template: sink key of a file; fields ``dataset_id``, ``date`` (batch
            created, YYYY-MM-DD), ``batch_id``, ``dataset_file_id``, ``name``
            (rules: :func:`~aep_extract.layout.check_template`).
        manifest_template: sink key of a batch manifest; the same fields but the last
            two.
        safety_lag_seconds: an incremental run (:meth:`Extractor.run_since_last`)
            plans up to now minus this, so batches the Catalog does not list yet
            are left to the next run rather than skipped.
        copy_replays: copy a batch that replays batches already copied (AEP
            ``replay.predecessors``), at the cost of the same data twice in the
            sink; by default such a batch is Skipped with the reason recorded.
        concurrency: how much runs at once (see :class:`ConcurrencyConfig`); the
            Extractor's default scheduler runs ``concurrency.workers`` threads.
        spool_dir: where a transform that needs the whole file (the Parquet
            built-ins) spools each source file, at most one per worker at a time;
            None for the system's temporary directory.
    """

    lease_seconds: float = attrs.field(default=DEFAULT_LEASE_SECONDS, validator=v.gt(0))
    unit_attempts: int = attrs.field(default=DEFAULT_UNIT_ATTEMPTS, validator=v.ge(1))
    unit_crashes: int = attrs.field(default=DEFAULT_UNIT_CRASHES, validator=v.ge(1))
    files_per_unit: Optional[int] = attrs.field(
        default=None, validator=v.optional(v.ge(1))
    )
    key_template: str = attrs.field(
        default=DEFAULT_KEY_TEMPLATE, validator=_key_template
    )
    manifest_template: str = attrs.field(
        default=DEFAULT_MANIFEST_TEMPLATE, validator=_key_template
    )
    safety_lag_seconds: float = attrs.field(
        default=DEFAULT_SAFETY_LAG_SECONDS, validator=v.ge(0)
    )
    copy_replays: bool = False
    concurrency: ConcurrencyConfig = attrs.field(factory=ConcurrencyConfig)
    spool_dir: Optional[str] = attrs.field(
        default=None, validator=v.optional(v.instance_of(str))
    )
