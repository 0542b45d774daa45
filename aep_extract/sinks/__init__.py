"""Sinks: the interface, the built-in sinks and :func:`open_sink`."""

from __future__ import annotations

from typing import Any, Optional

from .. import registry
from ..config import ConcurrencyConfig
from ._parts import part_range
from .base import PartWriter, Sink
from .local import LocalSink
from .memory import MemorySink

__all__ = [
    "LocalSink",
    "MemorySink",
    "PartWriter",
    "Sink",
    "check_sink_url",
    "open_sink",
    "part_range",
]


def open_sink(
    url: str, *, concurrency: Optional[ConcurrencyConfig] = None, **kwargs: Any
) -> Sink:
    """Open the sink a URL or path names; :mod:`aep_extract.registry` lists the
    schemes (``aep-extract run --help`` too):

    - ``s3://bucket/prefix``: an :class:`~aep_extract.sinks.s3.S3Sink`;
    - ``/data/out``, ``out`` or ``file:///data/out``: a :class:`LocalSink` rooted
      there (a ``file://`` URL is percent-decoded; its host may only be ``localhost``);
    - ``memory://``: a :class:`MemorySink`.

    Args:
        url: the sink URL or a local path.
        concurrency: the run's concurrency, for a sink with a connection pool to
            size it (see :attr:`~aep_extract.registry.FromUrl.uses_concurrency`).
        **kwargs: passed to the sink's ``from_url`` (its constructor).

    Raises:
        ConfigError: an empty or unsupported URL, or an unavailable sink.
    """
    sink: Sink = registry.open_url("sink", url, concurrency=concurrency, **kwargs)
    return sink


def check_sink_url(url: str) -> None:
    """Check that :func:`open_sink` accepts the URL's form, opening nothing (no
    client is built, no directory touched).

    Raises:
        ConfigError: see :func:`open_sink`.
    """
    registry.check_url("sink", url)
