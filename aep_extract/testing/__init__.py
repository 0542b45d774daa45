"""Test kit: a fake Adobe Experience Platform serving real HTTP on 127.0.0.1.

Use :class:`FakeAepPlatform` directly, or the ``fake_aep`` pytest fixture by adding
``pytest_plugins = ["aep_extract.testing.pytest_plugin"]`` to a root ``conftest.py``.
"""

from __future__ import annotations

from ._fake_data import FakeBatch, FakeDataSetFile, FakeFile, GeneratedBytes
from ._fake_http import FakeRequest
from .fake_platform import FakeAepPlatform, Fault, FaultResponse
from .faults import FaultPlan, FaultRule
from .foreign_host import ForeignHost
from .memory_source import MemoryAepSource

__all__ = [
    "FakeAepPlatform",
    "FakeBatch",
    "FakeDataSetFile",
    "FakeFile",
    "FakeRequest",
    "Fault",
    "FaultPlan",
    "FaultResponse",
    "FaultRule",
    "ForeignHost",
    "GeneratedBytes",
    "MemoryAepSource",
]
