"""The source contract, run against HttpAepSource over the fake platform and
against the kit's MemoryAepSource."""

from __future__ import annotations

import pytest

from aep_extract import HttpAepSource, RetryConfig
from aep_extract.testing import (
    FakeAepPlatform,
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    MemoryAepSource,
)
from aep_extract.testing.contracts import AepSourceContract, SourceCatalog


def fake_platform(catalog: SourceCatalog) -> FakeAepPlatform:
    """A fake platform serving the catalog: one leaf dataSetFileId per file id."""
    batches = []
    for batch, files in catalog.batches.items():
        leaves: dict[str, list[FakeFile]] = {}
        for (file_id, name), content in files.items():
            leaves.setdefault(file_id, []).append(FakeFile(name, content))
        batches.append(
            FakeBatch(
                batch_id=batch.batch_id,
                dataset_id=batch.dataset_id,
                status=batch.status,
                created_ms=batch.created_ms,
                dataset_files=[FakeDataSetFile(i, files=f) for i, f in leaves.items()],
            )
        )
    return FakeAepPlatform({ds: {"name": ds} for ds in catalog.datasets}, batches)


class TestHttpAepSource(AepSourceContract):
    @pytest.fixture
    def source(self, catalog):
        with fake_platform(catalog) as platform:
            source = HttpAepSource.from_env(
                platform.env(),
                chunk_size=4096,  # many ranges per file
                retry=RetryConfig(attempts=2, initial_wait=0),
                sleep=lambda seconds: None,
            )
            with source:
                yield source


class TestMemoryAepSource(AepSourceContract):
    @pytest.fixture
    def source(self, catalog):
        return MemoryAepSource(catalog.dataset_id, catalog.batches, chunk_size=4096)
