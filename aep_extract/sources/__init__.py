"""Sources of AEP data: the AepSource interface and its HTTP implementation."""

from __future__ import annotations

from .._run import report_count, report_retry, report_throttled
from .base import AepSource
from .http import HttpAepSource

__all__ = [
    "AepSource",
    "HttpAepSource",
    "report_count",
    "report_retry",
    "report_throttled",
]
