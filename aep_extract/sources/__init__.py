"""Sources of AEP data: the AepSource interface, its HTTP implementation and
:func:`open_source`."""

from __future__ import annotations

from typing import Any

from .. import registry
from .._run import report_count, report_retry, report_throttled
from .base import AepSource
from .http import HttpAepSource

__all__ = [
    "AepSource",
    "HttpAepSource",
    "check_source_url",
    "open_source",
    "report_count",
    "report_retry",
    "report_throttled",
]


def open_source(url: str = "aep://", **kwargs: Any) -> AepSource:
    """Open the source a URL names; :mod:`aep_extract.registry` lists the schemes.

    - ``aep://``: an :class:`HttpAepSource` configured by the ``AEP_*`` variables
      (:meth:`HttpAepSource.from_env`; ``kwargs`` override its fields).

    Raises:
        ConfigError: an unsupported URL, or a missing or invalid setting.
    """
    source: AepSource = registry.open_url("source", url, **kwargs)
    return source


def check_source_url(url: str) -> None:
    """Check that :func:`open_source` accepts the URL's form, opening nothing.

    Raises:
        ConfigError: see :func:`open_source`.
    """
    registry.check_url("source", url)
