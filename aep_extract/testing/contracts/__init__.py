"""Conformance suites for every interface, to rerun against any implementation.

Subclass a contract in a test module and supply its fixture; every test then runs
against your implementation::

    import pytest
    from aep_extract.testing.contracts import (
        AepSourceContract,
        CheckpointStoreContract,
        SchedulerContract,
        SinkContract,
    )

    class TestMyStore(CheckpointStoreContract):
        @pytest.fixture
        def store(self):
            with MyStore(...) as store:
                yield store

    class TestMySink(SinkContract):
        @pytest.fixture
        def sink(self):
            return MySink(...)

    class TestMySource(AepSourceContract):
        @pytest.fixture
        def source(self, catalog):
            with MySource(load(catalog.batches)) as source:
                yield source

    class TestMyScheduler(SchedulerContract):
        @pytest.fixture
        def scheduler(self):
            return MyScheduler(...)

The store suite controls time itself by setting ``store.clock`` (a clock attribute
every :class:`~aep_extract.checkpoints.base.CheckpointStore` has), so nothing sleeps.
A store without the optional per-dataset records (the watermark and destination
primitives) subclasses :class:`BasicCheckpointStoreContract` instead; one whose
``raise_watermark`` and first ``bind_destination`` are atomic subclasses
:class:`AtomicWatermarksContract` to have that checked under concurrency too.
Every store and sink test uses fresh dataset ids, batch ids and key prefixes, so a
fixture may share one table or bucket across tests. The source suite's ``source``
fixture serves the batches and files of the :class:`SourceCatalog` it is given.
"""

from __future__ import annotations

from ._schedulers import SchedulerContract
from ._sinks import SinkContract
from ._sources import AepSourceContract, SourceCatalog
from ._stores import (
    LEASE,
    START,
    AtomicWatermarksContract,
    BasicCheckpointStoreContract,
    CheckpointStoreContract,
    ManualClock,
)

__all__ = [
    "LEASE",
    "START",
    "AepSourceContract",
    "AtomicWatermarksContract",
    "BasicCheckpointStoreContract",
    "CheckpointStoreContract",
    "ManualClock",
    "SchedulerContract",
    "SinkContract",
    "SourceCatalog",
]
