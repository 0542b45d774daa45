"""Register each completed unit's ``date=`` partition, during a run and after a crash.

:class:`PartitionHooks` is an :class:`~aep_extract.ExtractionHooks`: give it to
``Extractor(hooks=...)`` and each unit that completes gets its day's partition
(``date=YYYY-MM-DD``, the ``{date}`` of its keys) in the table, the table being
created on first use. A run that dies between a unit's manifest and its partition
leaves the partition out; :meth:`PartitionHooks.repair` (at the start or end of the
next run) registers the partitions of every Completed unit of the dataset.
"""

from __future__ import annotations

import importlib
import json
import logging
import string
import threading
from collections.abc import Iterable
from typing import Any, Optional

from ..checkpoints.base import CheckpointStore
from ..errors import AepExtractError, CatalogError, ConfigError
from ..hooks import ExtractionHooks
from ..layout import KeyLayout, batch_date
from ..models import UnitStatus, WorkUnit, manifest_objects
from ..sinks.base import READ_CHUNK, Sink
from .base import PARTITION_KEY, TableCatalog
from .hive_types import SchemaLike

__all__ = ["PartitionHooks", "parquet_schema", "partition_root", "table_location"]

logger = logging.getLogger(__name__)

MAX_FOOTER = 16 * 1024 * 1024
"""The largest Parquet footer :func:`parquet_schema` reads (the bytes it keeps)."""

_SEGMENT = f"{PARTITION_KEY}={{date}}/"


def partition_root(layout: KeyLayout, dataset_id: str) -> str:
    """The dataset's key prefix above its ``date=`` folders (``{dataset_id}/`` in
    the default layout): the table's location, relative to the sink.

    Raises:
        ConfigError: the file template has no ``date={date}/`` segment, or
            something other than fixed text and ``{dataset_id}`` before it (then
            no one folder holds the dataset's partitions).
    """
    template = layout.file_template
    head, found, _ = template.partition(_SEGMENT)
    if not found or (head and not head.endswith("/")):
        raise ConfigError(
            f"key template {template!r} has no '{_SEGMENT}' segment: a table "
            f"partitioned by {PARTITION_KEY} needs keys like "
            "'{dataset_id}/date={date}/...'"
        )
    fields = {f for _, f, _, _ in string.Formatter().parse(head) if f is not None}
    if fields != {"dataset_id"}:
        raise ConfigError(
            f"key template {template!r}: the part before '{_SEGMENT}' must hold "
            "{dataset_id} and no other placeholder, so that one folder holds the "
            "dataset's partitions"
        )
    return head.format(dataset_id=dataset_id)


def table_location(
    sink_url: str, dataset_id: str, layout: Optional[KeyLayout] = None
) -> str:
    """The location of a dataset's table: the sink's root plus
    :func:`~aep_extract.tables.partitions.partition_root`, e.g.
    ``s3://bucket/aep/5e8f81cf/``.

    Args:
        sink_url: the sink's ``url`` (``s3://bucket/prefix``).
        dataset_id: the dataset.
        layout: the runs' key layout (default: the default layout).

    Raises:
        ConfigError: see :func:`~aep_extract.tables.partitions.partition_root`.
    """
    root = partition_root(layout or KeyLayout(), dataset_id)
    return f"{sink_url.rstrip('/')}/{root}"


def parquet_schema(sink: Sink, key: str) -> Any:
    """The ``pyarrow.Schema`` of a Parquet object in the sink.

    Streams the object once and keeps only its last 16 MiB (``MAX_FOOTER``),
    where a Parquet file keeps its schema, so memory stays bounded.

    Raises:
        ConfigError: pyarrow is not installed.
        CatalogError: the object is not Parquet, or its footer is larger.
        SinkError: the object cannot be read.
    """
    try:
        pa: Any = importlib.import_module("pyarrow")
        pq: Any = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ConfigError(
            "reading a table's schema from a Parquet file needs pyarrow: "
            "pip install 'aep-extract[parquet]', or give the schema"
        ) from None
    keep = MAX_FOOTER + 8
    tail = bytearray()
    with sink.open_read(key) as src:
        for chunk in iter(lambda: src.read(READ_CHUNK), b""):
            tail += chunk
            del tail[:-keep]
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        raise CatalogError(f"{key}: not a Parquet file (no PAR1 trailer)")
    size = int.from_bytes(tail[-8:-4], "little")
    if size + 8 > len(tail):
        raise CatalogError(
            f"{key}: a Parquet footer of {size} bytes, more than {MAX_FOOTER}"
        )
    # The footer alone, behind the leading magic: all read_schema looks at.
    footer = b"PAR1" + bytes(tail[-(size + 8) :])
    try:
        return pq.read_schema(pa.BufferReader(footer))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise CatalogError(f"{key}: unreadable Parquet footer: {exc}") from exc


class PartitionHooks(ExtractionHooks):
    """Registers the ``date=`` partition of each unit that completes.

    A day is registered once per instance: its first completed unit queues it,
    and the queue is flushed (one ``BatchCreatePartition``) when it holds
    ``batch_size`` days, by :meth:`flush`, and by :meth:`close`. The first flush
    creates the table if it is absent, with the columns of ``schema``, or else
    of the smallest Parquet file the flushed units' manifests list (read from
    ``sink``, pyarrow needed). Registration runs on the engine's thread; a failure
    is logged by the run and ignored, and :meth:`repair` makes it good later.

    Args:
        catalog: the table (its location the dataset's prefix, see
            :func:`table_location`).
        dataset_id: the dataset whose units to register; others are ignored.
        layout: the runs' key layout (default: the default layout).
        schema: the table's columns if it must be created (a ``pyarrow.Schema``
            or Glue column dicts).
        sink: where to read a schema from when none is given.
        batch_size: queued days that trigger a flush (1: a new day's partition
            appears as soon as its first unit completes).

    Raises:
        ConfigError: the key template has no ``date={date}/`` segment (see
            :func:`~aep_extract.tables.partitions.partition_root`), the
            catalog's location is not the dataset's prefix, or ``batch_size``
            is below 1.
    """

    def __init__(
        self,
        catalog: TableCatalog,
        dataset_id: str,
        *,
        layout: Optional[KeyLayout] = None,
        schema: Optional[SchemaLike] = None,
        sink: Optional[Sink] = None,
        batch_size: int = 1,
    ) -> None:
        self.layout = layout or KeyLayout()
        root = partition_root(self.layout, dataset_id)
        if not f"/{catalog.location}".endswith(f"/{root}"):
            raise ConfigError(
                f"table location {catalog.location} is not the prefix of dataset "
                f"{dataset_id} (it should end in /{root})"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.catalog = catalog
        self.dataset_id = dataset_id
        self.schema = schema
        self.sink = sink
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._queued: dict[str, WorkUnit] = {}  # day -> its first completed unit
        self._registered: set[str] = set()
        self._table_checked = False

    def unit_finished(self, *, unit: WorkUnit, **kwargs: Any) -> None:
        """Queue the unit's day; flush when ``batch_size`` days are queued."""
        if unit.dataset_id != self.dataset_id:
            return
        day = batch_date(unit.batch_created_ms)
        with self._lock:
            if day in self._registered:
                return
            self._queued.setdefault(day, unit)
            full = len(self._queued) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> int:
        """Register the queued days now.

        Returns:
            How many partitions were new.

        Raises:
            CatalogError: Glue refused (the days stay queued for the next flush).
        """
        with self._lock:
            queued = list(self._queued.values())
            added = self._register(queued)
            self._queued.clear()
            return added

    def repair(self, store: CheckpointStore) -> int:
        """Register the partitions of every Completed unit of the dataset in
        ``store`` (idempotent): what a crash between a unit's manifest and its
        partition left out. Asks the table which days it lacks first
        (``BatchGetPartition``), so a run with nothing to repair writes nothing.

        Returns:
            How many partitions were new.

        Raises:
            CheckpointError: the store cannot be read.
            CatalogError: Glue refused.
        """
        days: dict[str, WorkUnit] = {}
        for cp in store.list(self.dataset_id, UnitStatus.COMPLETED):
            days.setdefault(batch_date(cp.unit.batch_created_ms), cp.unit)
        with self._lock:
            missing = self.catalog.missing_partitions(days)
            self._registered.update(days.keys() - set(missing))
            added = self._register(days[day] for day in missing)
        if added:
            logger.info(
                "repaired %d partition(s) of %s in %s",
                added,
                self.dataset_id,
                self.catalog,
            )
        return added

    def close(self) -> None:
        """Flush the queue."""
        self.flush()

    def _register(self, units: Iterable[WorkUnit]) -> int:
        days: dict[str, WorkUnit] = {}
        for unit in units:
            days.setdefault(batch_date(unit.batch_created_ms), unit)
        if not days:
            return 0
        if not self._table_checked:
            self._ensure_table(list(days.values()))
            self._table_checked = True
        added = self.catalog.add_partitions(days)
        self._registered.update(days)
        return added

    def _ensure_table(self, units: list[WorkUnit]) -> None:
        if self.schema is not None:
            self.catalog.ensure_table(self.schema)
        elif not self.catalog.table_exists():
            self.catalog.ensure_table(parquet_schema(*self._sample(units)))

    def _sample(self, units: list[WorkUnit]) -> tuple[Sink, str]:
        """The sink and key of the smallest Parquet object the units' manifests list
        (a file or a transform's output; any object when none ends in
        ``.parquet``)."""
        if self.sink is None:
            raise CatalogError(
                f"table {self.catalog} does not exist: give a schema, or the sink "
                "to read one from"
            )
        files: list[tuple[bool, int, str]] = []
        for unit in units:
            key = self.layout.manifest_key(unit)
            try:
                objects = manifest_objects(json.loads(self.sink.read_bytes(key)))
                files += [
                    (not o.key.endswith(".parquet"), o.size, o.key) for o in objects
                ]
            except (ValueError, KeyError, TypeError, AepExtractError) as exc:
                logger.warning("no schema from manifest %s: %s", key, exc)
        if not files:
            raise CatalogError(
                f"table {self.catalog} does not exist and the manifests of "
                f"{len(units)} unit(s) list no file to read a schema from"
            )
        return self.sink, str(min(files)[2])
