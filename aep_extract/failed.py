"""AEP batches that failed ingestion: list them, and export their failed files.

A failed batch (Catalog status ``failed`` or ``failure``) holds no data to copy, but
its failed files (``/export/batches/{id}/failed``) tell why it failed. The export reuses
the extractor: a source adapter presents each failed batch as a batch to copy and its
failed files as its files, the key layout puts them under
``failed/{dataset_id}/date=YYYY-MM-DD/batch={batch_id}/{name}``, and the units are
registered under their own dataset id, ``{dataset_id}:failed``, so they never mix
with the dataset's data units. A rerun copies nothing already exported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Optional

import attrs

from .checkpoints.base import CheckpointStore
from .config import ExtractorConfig
from .errors import AepExtractError
from .extractor import Extractor, Moment
from .models import FAILED_BATCH_STATUSES, Batch, FileRef, TimeWindow
from .report import RunReport
from .schedulers.base import Scheduler
from .sinks.base import Sink
from .sources.base import AepSource

logger = logging.getLogger(__name__)

__all__ = [
    "FailedFilesSource",
    "export_failed_files",
    "failed_batches",
    "failed_config",
    "failed_namespace",
    "failed_prefix",
]

FAILED_SUFFIX = ":failed"
"""Appended to a dataset id to name the store namespace of its failed-file units."""


def failed_namespace(dataset_id: str) -> str:
    """The dataset id under which the failed-file units of ``dataset_id`` are kept."""
    return f"{dataset_id}{FAILED_SUFFIX}"


def failed_prefix(dataset_id: str) -> str:
    """The sink prefix holding the exported failed files of ``dataset_id``."""
    return f"failed/{dataset_id}/"


def failed_config(
    dataset_id: str, base: Optional[ExtractorConfig] = None
) -> ExtractorConfig:
    """An extractor configuration laying failed files out under
    :func:`failed_prefix` (other settings from ``base``)."""
    literal = failed_prefix(dataset_id).replace("{", "{{").replace("}", "}}")
    return attrs.evolve(
        base or ExtractorConfig(),
        key_template=literal + "date={date}/batch={batch_id}/{name}",
        manifest_template=literal + "date={date}/batch={batch_id}/_manifest.json",
        files_per_unit=None,
    )


def failed_batches(
    source: AepSource, dataset_id: str, window: TimeWindow
) -> list[Batch]:
    """The dataset's batches created in ``window`` that failed ingestion."""
    return [
        batch
        for batch in source.list_batches(dataset_id, window)
        if batch.status in FAILED_BATCH_STATUSES
    ]


class FailedFilesSource(AepSource):
    """Presents the failed batches of one dataset as batches to copy.

    ``list_batches`` of :func:`failed_namespace` yields the dataset's failed batches
    (relabelled with the namespace and an exportable status), ``list_files`` returns
    a batch's failed files. Bytes and counters come from the wrapped source, which
    the adapter does not close.

    Args:
        source: the real source.
        dataset_id: the dataset whose failed batches to present.
    """

    def __init__(self, source: AepSource, dataset_id: str) -> None:
        self.source = source
        self.dataset_id = dataset_id
        self.namespace = failed_namespace(dataset_id)

    def get_dataset(self, dataset_id: str) -> Mapping[str, Any]:
        """The real dataset's metadata."""
        return self.source.get_dataset(self._real(dataset_id))

    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        """The failed batches, as batches of the namespace with status ``success``
        (so that planning registers them)."""
        for batch in failed_batches(self.source, self._real(dataset_id), window):
            yield attrs.evolve(batch, dataset_id=self.namespace, status="success")

    def list_files(self, batch_id: str) -> list[FileRef]:
        """The batch's failed files, in their deterministic order."""
        return self.source.list_failed_files(batch_id)

    def read_file(
        self, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        """A failed file's bytes, from the wrapped source."""
        return self.source.read_file(file, start, end)

    def interrupt(self) -> int:
        """Cut the wrapped source's requests in flight."""
        return self.source.interrupt()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {self.dataset_id!r})"

    def _real(self, dataset_id: str) -> str:
        if dataset_id not in (self.namespace, self.dataset_id):
            raise AepExtractError(
                f"{self!r} serves {self.namespace!r}, not {dataset_id!r}"
            )
        return self.dataset_id


def export_failed_files(
    source: AepSource,
    *,
    store: CheckpointStore,
    sink: Sink,
    dataset_id: str,
    start: Moment,
    end: Moment,
    scheduler: Optional[Scheduler] = None,
    config: Optional[ExtractorConfig] = None,
) -> RunReport:
    """Copy the failed files of the dataset's failed batches in ``[start, end)`` to
    ``sink`` under :func:`failed_prefix`, checkpointed in ``store`` under
    :func:`failed_namespace`; safe to rerun.

    Returns:
        The run report; its ``dataset_id`` is the namespace.

    Raises:
        ConfigError: a naive or reversed window.
        SourceError: the Catalog or Data Access API failed.
    """
    namespace = failed_namespace(dataset_id)
    with Extractor(
        FailedFilesSource(source, dataset_id),
        store=store,
        sink=sink,
        scheduler=scheduler,
        config=failed_config(dataset_id, config),
    ) as extractor:
        report = extractor.run(namespace, start, end)
    if report.ok:
        # The engine cannot derive a prefix from the literal templates; every unit
        # is Completed, so no live worker writes under the prefix any more.
        try:
            removed = sink.cleanup_incomplete(
                failed_prefix(dataset_id), older_than=timedelta(0)
            )
        except AepExtractError as exc:
            logger.warning("could not clean up failed files: %s", exc)
        else:
            if removed:
                logger.info("removed %d incomplete write(s)", removed)
    return report
