"""Sources of AEP data: the AepSource interface and its HTTP implementation."""

from __future__ import annotations

from .base import AepSource
from .http import HttpAepSource

__all__ = ["AepSource", "HttpAepSource"]
