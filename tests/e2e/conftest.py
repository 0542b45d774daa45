"""Fixtures of the end-to-end CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, object]:
    """Where a CLI test keeps its SQLite state and its local sink."""
    return {
        "db": tmp_path / "state.db",
        "store": f"sqlite:///{tmp_path / 'state.db'}",
        "sink": str(tmp_path / "out"),
        "out": tmp_path / "out",
    }
