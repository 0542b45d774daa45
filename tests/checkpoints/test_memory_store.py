"""MemoryCheckpointStore: the store contract, plus its own constructor."""

from __future__ import annotations

import logging

import pytest

from aep_extract.checkpoints import CheckpointStore, MemoryCheckpointStore
from aep_extract.models import UnitStatus, WorkUnit
from aep_extract.testing.contracts import (
    AtomicWatermarksContract,
    BasicCheckpointStoreContract,
    CheckpointStoreContract,
)


class TestMemoryCheckpointStore(AtomicWatermarksContract):
    @pytest.fixture
    def store(self):
        with MemoryCheckpointStore() as store:
            yield store


class _StoreWithoutWatermarks(MemoryCheckpointStore):
    """A custom store that implements only the required primitives and _delete."""

    _load_watermark = CheckpointStore._load_watermark
    _save_watermark = CheckpointStore._save_watermark
    raise_watermark = CheckpointStore.raise_watermark
    _load_destination = CheckpointStore._load_destination
    _save_destination = CheckpointStore._save_destination
    _bind_destination = CheckpointStore._bind_destination
    get_many = CheckpointStore.get_many  # the default, built on _scan


class _StoreWithPlainDestinations(MemoryCheckpointStore):
    """A custom store with the two destination primitives and nothing atomic."""

    _bind_destination = CheckpointStore._bind_destination


class TestStoreWithoutWatermarks(BasicCheckpointStoreContract):
    @pytest.fixture
    def store(self):
        with _StoreWithoutWatermarks() as store:
            yield store


def test_a_store_without_watermarks_says_so():
    store = _StoreWithoutWatermarks()
    with pytest.raises(NotImplementedError, match="keeps no watermarks"):
        store.watermark("ds")
    with pytest.raises(NotImplementedError, match="keeps no watermarks"):
        store.raise_watermark("ds", 1)
    store.register([WorkUnit(dataset_id="ds", batch_id="b", batch_created_ms=0)])
    assert store.forget("ds") == 1  # forget works without watermarks


class TestStoreWithPlainDestinations(CheckpointStoreContract):
    @pytest.fixture
    def store(self):
        with _StoreWithPlainDestinations() as store:
            yield store


def test_a_store_without_destinations_binds_nothing(caplog):
    store = _StoreWithoutWatermarks()
    with caplog.at_level(logging.DEBUG, logger="aep_extract.checkpoints.base"):
        store.bind_destination("ds", "s3://bucket-a/aep")
    assert "records no destinations" in caplog.text
    store.bind_destination("ds", "s3://bucket-b/aep")  # nothing recorded, no error
    assert store.destination("ds") is None
    with pytest.raises(NotImplementedError, match="records no destinations"):
        store._load_destination("ds")
    store.register([WorkUnit(dataset_id="ds", batch_id="b", batch_created_ms=0)])
    assert store.forget("ds") == 1


def test_clock_argument_is_used():
    store = MemoryCheckpointStore(clock=lambda: 42.5)
    unit = WorkUnit(dataset_id="ds", batch_id="b1", batch_created_ms=0)
    store.register([unit])
    lease = store.claim("ds", "me", 10)
    assert lease is not None
    assert lease.expires_at == 52.5
    assert lease.checkpoint.created_at == 42.5


def test_stores_are_independent():
    unit = WorkUnit(dataset_id="ds", batch_id="b1", batch_created_ms=0)
    first, second = MemoryCheckpointStore(), MemoryCheckpointStore()
    first.register([unit])
    assert second.summary("ds")[UnitStatus.PENDING] == 0
    assert "units=1" in repr(first)
