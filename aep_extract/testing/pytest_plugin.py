"""Pytest fixtures for the fake AEP platform.

Enable them in a root ``conftest.py``::

    pytest_plugins = ["aep_extract.testing.pytest_plugin"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_platform import FakeAepPlatform


@pytest.fixture
def fake_aep() -> Iterator[FakeAepPlatform]:
    """A started :meth:`~aep_extract.testing.FakeAepPlatform.generate` platform
    (seed 7), stopped after the test."""
    with FakeAepPlatform.generate() as platform:
        yield platform


@pytest.fixture
def fake_aep_env(
    fake_aep: FakeAepPlatform, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The ``AEP_*`` variables of ``fake_aep``, also set in ``os.environ``."""
    env = fake_aep.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
