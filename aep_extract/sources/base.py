"""The AepSource interface: where batches, file listings and bytes come from."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional

from .._closeable import Closeable
from ..errors import ConfigError
from ..models import Batch, FileRef, TimeWindow, from_epoch_ms
from ..registry import FromUrl

if TYPE_CHECKING:
    from .http import HttpAepSource


def check_range(file: FileRef, start: int, end: Optional[int]) -> int:
    """The end (exclusive) of the byte range :meth:`AepSource.read_file` is asked
    for, ``end`` or the file's length.

    Raises:
        ConfigError: ``start`` outside ``[0, file.length]``, or ``end`` outside
            ``[start, file.length]``.
    """
    if not 0 <= start <= file.length:
        raise ConfigError(f"start {start} outside file of {file.length} bytes")
    stop = file.length if end is None else end
    if not start <= stop <= file.length:
        raise ConfigError(
            f"end {end} outside [{start}, {file.length}] of {file.name!r}"
        )
    return stop


class AepSource(Closeable, FromUrl, abc.ABC):
    """Reads datasets, batches and file bytes from Adobe Experience Platform.

    The default implementation is :class:`~aep_extract.sources.http.HttpAepSource`
    (Catalog + Data Access over HTTP); :meth:`from_env` builds it from ``AEP_*``
    environment variables, as :func:`~aep_extract.open_source` does for ``aep://``.
    Other sources register a URL scheme in :mod:`aep_extract.registry`.

    One source may serve several extractors at once. What happens during a run
    belongs to that run: an implementation that retries or counts reports it with
    :func:`~aep_extract.sources.report_retry`,
    :func:`~aep_extract.sources.report_throttled` and
    :func:`~aep_extract.sources.report_count`, from any thread, and they reach the
    run the call was made for.
    """

    @abc.abstractmethod
    def get_dataset(self, dataset_id: str) -> Mapping[str, Any]:
        """The dataset's Catalog metadata.

        Raises:
            NotFoundError: no such dataset.
        """

    @abc.abstractmethod
    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        """Batches of a dataset created in ``window`` (``[start, end)``), each once,
        oldest first, through every page; only those with ``status`` if given."""

    @abc.abstractmethod
    def list_files(self, batch_id: str) -> list[FileRef]:
        """Every physical file of a batch, in the deterministic order of
        :attr:`FileRef.sort_key` (a file's position in this list is its offset).

        Raises:
            NotFoundError: no such batch.
        """

    @abc.abstractmethod
    def read_file(
        self, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        """Stream a file's bytes from byte ``start`` up to ``end`` (exclusive; None:
        the file's end), in bounded chunks. A multi-stream copy reads one part per
        call.

        Implementations check the total against ``file.length`` and raise
        :class:`~aep_extract.errors.IncompleteDownload` rather than end short.

        Raises:
            ConfigError: ``start`` outside ``[0, file.length]``, or ``end`` outside
                ``[start, file.length]``.
            NotFoundError: no such file.
            SourceError: the bytes are shorter or longer than ``file.length``.
        """

    def get_batch(
        self, dataset_id: str, batch_id: str, *, created_ms: int
    ) -> Optional[Batch]:
        """One batch of the dataset as the Catalog shows it now, or None if gone.

        ``created_ms`` is the batch's known ``created`` time; the default
        implementation lists that millisecond with :meth:`list_batches`.
        """
        moment = TimeWindow(from_epoch_ms(created_ms), from_epoch_ms(created_ms + 1))
        for batch in self.list_batches(dataset_id, moment):
            if batch.batch_id == batch_id:
                return batch
        return None

    def list_failed_files(self, batch_id: str) -> list[FileRef]:
        """Files of a batch that failed ingestion (optional override)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list failed files")

    def interrupt(self) -> int:
        """Cut every request in flight short, so that reads blocked on a slow
        server fail within moments (optional override; the default does nothing).

        The engine calls it when a run aborts; requests of other runs sharing the
        source are retried as after any broken connection. Returns how many
        requests were cut.
        """
        return 0

    @classmethod
    def from_env(
        cls, env: Optional[Mapping[str, str]] = None, **options: Any
    ) -> HttpAepSource:
        """Build the HTTP source from ``AEP_*`` variables (``os.environ`` by default).

        Raises:
            ConfigError: a required variable is missing.
        """
        from .http import HttpAepSource

        return HttpAepSource.from_env(env, **options)
