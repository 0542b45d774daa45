"""Sinks: the interface, the built-in sinks and :func:`open_sink`."""

from __future__ import annotations

import functools
import importlib
import os
import re
import urllib.parse
from typing import Any, Callable

from ..errors import ConfigError
from ._s3_support import parse_s3_url
from .base import Sink
from .local import LocalSink
from .memory import MemorySink

__all__ = ["LocalSink", "MemorySink", "Sink", "check_sink_url", "open_sink"]

SINK_URL_FORMS = (
    "s3://BUCKET/PREFIX",
    "azure://CONTAINER/PREFIX",
    "a local path",
    "file:///PATH",
    "memory://",
)
"""The sink URLs :func:`open_sink` accepts."""

# Two or more letters: a one-letter "scheme" is a Windows drive (C://data).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def open_sink(url: str, **kwargs: Any) -> Sink:
    """Open the sink a URL or path names.

    - ``s3://bucket/prefix``: an :class:`~aep_extract.sinks.s3.S3Sink`;
    - ``azure://container/prefix``: an
      :class:`~aep_extract.sinks.azure.AzureBlobSink` (needs the ``azure`` extra);
    - ``/data/out``, ``out`` or ``file:///data/out``: a :class:`LocalSink` rooted
      there (a ``file://`` URL is percent-decoded; its host may only be ``localhost``);
    - ``memory://``: a :class:`MemorySink`.

    Args:
        url: the sink URL or a local path.
        **kwargs: passed to the sink's constructor.

    Raises:
        ConfigError: an empty or unsupported URL, or an unavailable sink.
    """
    return _resolve(url)(**kwargs)


def check_sink_url(url: str) -> None:
    """Check that :func:`open_sink` accepts the URL's form, opening nothing (no
    client is built, no directory touched).

    Raises:
        ConfigError: see :func:`open_sink`.
    """
    _resolve(url)


def _resolve(url: str) -> Callable[..., Sink]:
    """What builds the sink a URL names, its form checked."""
    if not url:
        raise ConfigError(
            f"empty sink URL; expected one of: {', '.join(SINK_URL_FORMS)}"
        )
    match = _SCHEME.match(url)
    if match is None:
        return functools.partial(LocalSink, url)
    scheme = match.group(1).lower()
    if scheme == "file":
        return functools.partial(LocalSink, _file_url_path(url))
    if scheme == "memory" and url[match.end() :] in ("", "/"):
        return MemorySink
    if scheme == "s3":
        parse_s3_url(url)  # the form, checked without importing boto3
        return functools.partial(_open_s3, url)
    if scheme == "azure":  # until the backend registry takes these two calls
        from .azure import AzureBlobSink

        AzureBlobSink.check_url(url)
        return functools.partial(AzureBlobSink.from_url, url)
    raise ConfigError(
        f"unsupported sink URL {url!r}; expected one of: {', '.join(SINK_URL_FORMS)}"
    )


def _file_url_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"sink URL {url!r}: host {parts.netloc!r} is not local; "
            "write file:///absolute/path"
        )
    if not parts.path or parts.query or parts.fragment:
        raise ConfigError(f"sink URL {url!r}: expected file:///absolute/path")
    if os.name == "nt":
        # url2pathname turns /C:/data into C:\data; imported here, it is heavy.
        from urllib.request import url2pathname

        return url2pathname(parts.path)
    return urllib.parse.unquote(parts.path)


def _open_s3(url: str, **kwargs: Any) -> Sink:
    module_name = f"{__name__}.s3"
    # Imported by name and lazily: boto3 and smart_open load only for an S3 sink.
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise ConfigError(f"s3:// sink cannot be imported: {exc}") from exc
        raise ConfigError("s3:// sink is not available yet") from exc
    sink: Sink = module.S3Sink(url, **kwargs)
    return sink
