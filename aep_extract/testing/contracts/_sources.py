"""The source contract: what every AepSource must do, on a catalog it serves."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import ClassVar, Optional

import attrs
import pytest

from ...errors import ConfigError, NotFoundError, SourceError
from ...models import Batch, FileRef, TimeWindow, from_epoch_ms
from ...sources.base import AepSource

__all__ = ["AepSourceContract", "SourceCatalog"]

Files = Mapping[tuple[str, str], bytes]
"""The files of a batch: ``(dataSetFileId, name) -> content``."""

T0 = 1_718_000_000_000
"""Start of the catalog's window (epoch ms)."""
DAY_MS = 86_400_000


@attrs.frozen(kw_only=True)
class SourceCatalog:
    """The batches and files a source under :class:`AepSourceContract` serves.

    Load :attr:`batches` into your backend (each :class:`~aep_extract.Batch` with
    its files, ``(dataSetFileId, name) -> content``); :attr:`datasets` are every
    dataset id they belong to.

    Attributes:
        dataset_id: the dataset most tests list.
        paged_dataset_id: a dataset of more batches than a Catalog page holds,
            many created in one millisecond.
        other_dataset_id: a dataset whose batch lies in :attr:`window`.
        window: the window the tests list.
        batches: every batch of every dataset, with its files.
    """

    dataset_id: ClassVar[str] = "contract-ds"
    paged_dataset_id: ClassVar[str] = "contract-paged"
    other_dataset_id: ClassVar[str] = "contract-other"
    window: ClassVar[TimeWindow] = TimeWindow(
        from_epoch_ms(T0), from_epoch_ms(T0 + DAY_MS)
    )
    batches: Mapping[Batch, Files]

    @property
    def datasets(self) -> list[str]:
        """Every dataset id of the catalog."""
        return [self.dataset_id, self.paged_dataset_id, self.other_dataset_id]

    def batch(self, batch_id: str) -> Batch:
        """The batch with that id."""
        return next(b for b in self.batches if b.batch_id == batch_id)

    def files(self, batch_id: str) -> Files:
        """The files of a batch."""
        return self.batches[self.batch(batch_id)]

    def expected(self, dataset_id: str, window: TimeWindow) -> list[Batch]:
        """The batches of a dataset created in ``window``, oldest first, then by id."""
        return sorted(
            (
                b
                for b in self.batches
                if b.dataset_id == dataset_id and window.contains_ms(b.created_ms)
            ),
            key=lambda b: (b.created_ms, b.batch_id),
        )

    @classmethod
    def default(cls) -> SourceCatalog:
        """The catalog the contract's ``catalog`` fixture gives."""
        rng = random.Random(20240610)
        ds, paged, other = cls.dataset_id, cls.paged_dataset_id, cls.other_dataset_id
        end = T0 + DAY_MS

        def batch(
            batch_id: str,
            created_ms: int,
            status: str = "success",
            dataset_id: str = ds,
        ) -> Batch:
            return Batch(
                batch_id=batch_id,
                dataset_id=dataset_id,
                status=status,
                created_ms=created_ms,
            )

        def one_file(batch_id: str, size: int = 10) -> Files:
            return {(f"{batch_id}-1", "part-0.parquet"): rng.randbytes(size)}

        batches: dict[Batch, Files] = {
            batch("c-before", T0 - 1): one_file("c-before"),
            batch("c-start", T0): {
                ("c-start-2", "part-0.parquet"): rng.randbytes(300),
                ("c-start-1", "données 1+2.csv"): "ü,ß\n".encode(),
                ("c-start-1", "empty.json"): b"",
            },
            batch("c-large", T0 + 1_000): {
                ("c-large-1", "big.bin"): rng.randbytes(150_000)
            },
            batch("c-tie-b", T0 + 5_000): one_file("c-tie-b"),
            batch("c-tie-a", T0 + 5_000): one_file("c-tie-a"),
            batch("c-failed", T0 + 6_000, status="failed"): one_file("c-failed"),
            batch("c-many", T0 + 7_000): {
                (f"c-many-{n:03d}", f"part-{n % 7}.parquet"): rng.randbytes(5)
                for n in range(105)
            },
            batch("c-empty", T0 + 8_000): {},
            batch("c-end", end): one_file("c-end"),
            batch("c-other", T0 + 9_000, dataset_id=other): one_file("c-other"),
        }
        for n in range(230):  # 120 in one millisecond: more than a page
            at = T0 + 60_000 + (0 if n < 120 else n)
            batches[batch(f"p-{n:03d}", at, dataset_id=paged)] = {}
        return cls(batches=batches)


_CATALOG = SourceCatalog.default()


class AepSourceContract:
    """What every :class:`~aep_extract.AepSource` must do.

    Supply a function-scoped ``source`` fixture that takes the ``catalog``
    fixture (a :class:`SourceCatalog`) and returns an open source serving exactly
    its batches and files. A source that streams bigger pieces than
    :attr:`max_chunk_size` sets its own in the subclass.
    """

    max_chunk_size: ClassVar[int] = 1024 * 1024
    """The largest bytes object ``read_file`` may yield."""

    @pytest.fixture
    def catalog(self) -> SourceCatalog:
        """The data the source must serve."""
        return _CATALOG

    @staticmethod
    def read(
        source: AepSource, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> bytes:
        """Everything ``read_file`` yields, checking that each piece is bytes."""
        pieces = list(source.read_file(file, start, end))
        assert all(isinstance(piece, bytes) and piece for piece in pieces)
        return b"".join(pieces)

    @staticmethod
    def ref(catalog: SourceCatalog, batch_id: str, name: str) -> FileRef:
        """The FileRef of a file of the catalog, as a listing reports it."""
        files = catalog.files(batch_id).items()
        ((file_id, _), content) = next(item for item in files if item[0][1] == name)
        return FileRef(dataset_file_id=file_id, name=name, length=len(content))

    # -- datasets and batches ---------------------------------------------------------

    def test_get_dataset_and_a_missing_one(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        assert isinstance(source.get_dataset(catalog.dataset_id), Mapping)
        with pytest.raises(NotFoundError):
            source.get_dataset("contract-no-such-dataset")

    def test_list_batches_of_the_window_oldest_first_each_once(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        listed = list(source.list_batches(catalog.dataset_id, catalog.window))
        expected = catalog.expected(catalog.dataset_id, catalog.window)
        assert sorted(b.batch_id for b in listed) == sorted(
            b.batch_id for b in expected
        )
        created = [b.created_ms for b in listed]
        assert created == sorted(created)
        for batch in listed:
            wanted = catalog.batch(batch.batch_id)
            assert (batch.dataset_id, batch.status, batch.created_ms) == (
                wanted.dataset_id,
                wanted.status,
                wanted.created_ms,
            )

    def test_the_window_includes_its_start_and_excludes_its_end(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        start, end = catalog.window.start_ms, catalog.window.end_ms
        for first, batch_id in ((start - 1, "c-before"), (start, "c-start")):
            moment = TimeWindow(from_epoch_ms(first), from_epoch_ms(first + 1))
            listed = source.list_batches(catalog.dataset_id, moment)
            assert [b.batch_id for b in listed] == [batch_id]
        after = TimeWindow(from_epoch_ms(end), from_epoch_ms(end + 1))
        assert [b.batch_id for b in source.list_batches(catalog.dataset_id, after)] == [
            "c-end"
        ]
        quiet = TimeWindow(from_epoch_ms(end + 1), from_epoch_ms(end + DAY_MS))
        assert list(source.list_batches(catalog.dataset_id, quiet)) == []

    def test_list_batches_by_status(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        ds, window = catalog.dataset_id, catalog.window
        failed = source.list_batches(ds, window, status="failed")
        assert [b.batch_id for b in failed] == ["c-failed"]
        done = source.list_batches(ds, window, status="success")
        assert "c-failed" not in {b.batch_id for b in done}

    def test_list_batches_pages_through_every_batch(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        listed = [
            b.batch_id
            for b in source.list_batches(catalog.paged_dataset_id, catalog.window)
        ]
        expected = catalog.expected(catalog.paged_dataset_id, catalog.window)
        assert len(expected) > 200
        assert len(listed) == len(set(listed))
        assert sorted(listed) == sorted(b.batch_id for b in expected)

    def test_get_batch_of_the_dataset_or_none(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        wanted = catalog.batch("c-large")
        got = source.get_batch(
            catalog.dataset_id, wanted.batch_id, created_ms=wanted.created_ms
        )
        assert got is not None
        assert (got.batch_id, got.status, got.created_ms) == (
            wanted.batch_id,
            wanted.status,
            wanted.created_ms,
        )
        other = catalog.batch("c-other")
        assert (
            source.get_batch(catalog.dataset_id, "c-other", created_ms=other.created_ms)
            is None
        )
        assert (
            source.get_batch(catalog.dataset_id, "c-gone", created_ms=wanted.created_ms)
            is None
        )

    # -- files ------------------------------------------------------------------------

    def test_list_files_in_order_with_sizes(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        for batch_id in ("c-start", "c-large", "c-many"):
            listed = source.list_files(batch_id)
            expected = sorted(catalog.files(batch_id).items())
            assert [(f.dataset_file_id, f.name, f.length) for f in listed] == [
                (file_id, name, len(content)) for (file_id, name), content in expected
            ]
        assert len(source.list_files("c-many")) == 105

    def test_list_files_of_an_empty_batch(self, source: AepSource) -> None:
        assert source.list_files("c-empty") == []

    def test_list_files_of_a_missing_batch(self, source: AepSource) -> None:
        with pytest.raises(NotFoundError):
            source.list_files("contract-no-such-batch")

    # -- bytes ------------------------------------------------------------------------

    def test_read_file_gives_every_byte_in_bounded_pieces(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        for batch_id in ("c-start", "c-large"):
            for file in source.list_files(batch_id):
                pieces = list(source.read_file(file))
                assert all(len(piece) <= self.max_chunk_size for piece in pieces)
                content = catalog.files(batch_id)[(file.dataset_file_id, file.name)]
                assert b"".join(pieces) == content

    @pytest.mark.parametrize("start", [0, 1, 4095, 4096, 65_537, 149_999, 150_000])
    def test_read_file_from_a_byte_offset(
        self, source: AepSource, catalog: SourceCatalog, start: int
    ) -> None:
        file = self.ref(catalog, "c-large", "big.bin")
        content = catalog.files("c-large")[("c-large-1", "big.bin")]
        assert self.read(source, file, start) == content[start:]

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, 0), (0, 1), (1, 4096), (4096, 65_537), (65_537, 150_000), (0, 150_000)],
    )
    def test_read_file_of_a_byte_range(
        self, source: AepSource, catalog: SourceCatalog, start: int, end: int
    ) -> None:
        """A part of a multi-stream copy: exactly the bytes ``[start, end)``."""
        file = self.ref(catalog, "c-large", "big.bin")
        content = catalog.files("c-large")[("c-large-1", "big.bin")]
        assert self.read(source, file, start, end) == content[start:end]

    @pytest.mark.parametrize(("start", "end"), [(10, 9), (0, 301)])
    def test_an_end_outside_the_range_is_refused(
        self, source: AepSource, catalog: SourceCatalog, start: int, end: int
    ) -> None:
        file = self.ref(catalog, "c-start", "part-0.parquet")
        with pytest.raises(ConfigError):
            self.read(source, file, start, end)

    def test_a_read_stopped_midway_resumes_exactly(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        file = self.ref(catalog, "c-large", "big.bin")
        content = catalog.files("c-large")[("c-large-1", "big.bin")]
        got = b""
        while len(got) < file.length:
            stream = source.read_file(file, len(got))
            got += next(stream)
            getattr(stream, "close", lambda: None)()  # dropped after one piece
        assert got == content

    def test_a_zero_byte_file_yields_nothing(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        assert self.read(source, self.ref(catalog, "c-start", "empty.json")) == b""

    @pytest.mark.parametrize("start", [-1, 301])
    def test_a_start_outside_the_file_is_refused(
        self, source: AepSource, catalog: SourceCatalog, start: int
    ) -> None:
        file = self.ref(catalog, "c-start", "part-0.parquet")
        with pytest.raises(ConfigError):
            self.read(source, file, start)

    def test_reading_a_missing_file(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        missing = FileRef(dataset_file_id="c-start-1", name="nothing.csv", length=3)
        with pytest.raises(NotFoundError):
            self.read(source, missing)

    @pytest.mark.parametrize("delta", [-1, 1], ids=["longer", "shorter"])
    def test_a_file_that_is_not_its_listed_length_is_an_error(
        self, source: AepSource, catalog: SourceCatalog, delta: int
    ) -> None:
        """The bytes are longer or shorter than the listing said: an error, never
        a stream that ends as if complete."""
        file = self.ref(catalog, "c-start", "part-0.parquet")
        wrong = attrs.evolve(file, length=file.length + delta)
        with pytest.raises(SourceError):
            self.read(source, wrong)

    # -- lifecycle --------------------------------------------------------------------

    def test_interrupt_when_idle_cuts_nothing_and_the_source_goes_on(
        self, source: AepSource, catalog: SourceCatalog
    ) -> None:
        assert source.interrupt() == 0
        file = self.ref(catalog, "c-start", "part-0.parquet")
        assert (
            self.read(source, file)
            == catalog.files("c-start")[("c-start-2", file.name)]
        )

    def test_context_manager_and_close(self, source: AepSource) -> None:
        with source as entered:
            assert entered is source
            assert source.list_files("c-empty") == []
        source.close()  # closing twice is harmless
