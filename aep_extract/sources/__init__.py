"""Sources of AEP data: the AepSource interface, its HTTP implementation and
:func:`open_source`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Optional

from .. import registry
from .._run import report_count, report_retry, report_throttled
from ..config import ConcurrencyConfig
from .base import AepSource

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The HTTP source imports requests (tens of milliseconds): load it on first use.
    if name == "HttpAepSource":
        return importlib.import_module(".http", __name__).HttpAepSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_source(
    url: str = "aep://",
    *,
    concurrency: Optional[ConcurrencyConfig] = None,
    **kwargs: Any,
) -> AepSource:
    """Open the source a URL names; :mod:`aep_extract.registry` lists the schemes.

    - ``aep://``: an :class:`HttpAepSource` configured by the ``AEP_*`` variables
      (:meth:`HttpAepSource.from_env`; ``kwargs`` override its fields).

    ``concurrency`` sizes the source's pool and rate limits, for a source that
    has them (see :attr:`~aep_extract.registry.FromUrl.uses_concurrency`).

    Raises:
        ConfigError: an unsupported URL, or a missing or invalid setting.
    """
    source: AepSource = registry.open_url(
        "source", url, concurrency=concurrency, **kwargs
    )
    return source


def check_source_url(url: str) -> None:
    """Check that :func:`open_source` accepts the URL's form, opening nothing.

    Raises:
        ConfigError: see :func:`open_source`.
    """
    registry.check_url("source", url)
