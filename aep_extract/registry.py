"""Backends by URL: each scheme names a class, imported only when a URL uses it.

In the manner of fsspec's ``registry.py``. There are three kinds of backend, each
with its opener: ``sink`` (:func:`~aep_extract.open_sink`), ``store``
(:func:`~aep_extract.open_store`) and ``source`` (:func:`~aep_extract.open_source`).
A fourth kind, ``transform``, names per-file transforms rather than URL schemes
(:func:`~aep_extract.transforms.open_transform`, entry point group
``aep_extract.transforms``).
An entry names its class by import path, so that nothing loads before a URL needs it
(boto3 loads for ``s3://`` and ``dynamodb://`` only).

A backend class builds itself from a URL with the classmethod ``from_url(url,
**options)`` and checks a URL's form, opening nothing, with ``check_url(url)``; the
base classes (:class:`~aep_extract.Sink`, :class:`~aep_extract.CheckpointStore`,
:class:`~aep_extract.AepSource`) document both. Another package adds a backend with an
entry point in the group ``aep_extract.sinks``, ``aep_extract.stores`` or
``aep_extract.sources``::

    [project.entry-points."aep_extract.sinks"]
    hdfs = "my_package.hdfs:HdfsSink"

or at run time with :func:`register`. The CLI's help and the documentation list the
backends from here.
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Optional,
    TypeVar,
    Union,
    cast,
)

import attrs

from ._validators import text_arg
from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "Backend",
    "FromUrl",
    "Kind",
    "backends",
    "check_url",
    "forms",
    "get_class",
    "open_url",
    "register",
    "require_bare",
    "scheme_of",
    "url_rest",
]

Kind = Literal["sink", "store", "source", "transform"]

ENTRY_POINT_GROUPS: dict[Kind, str] = {
    "sink": "aep_extract.sinks",
    "store": "aep_extract.stores",
    "source": "aep_extract.sources",
    "transform": "aep_extract.transforms",
}
"""The entry point group through which other packages add backends of each kind."""

KINDS = "sink, store, source or transform"

DEFAULT_SCHEMES: dict[Kind, str] = {"sink": "file"}
"""The scheme of a URL without one: a bare path names a local directory."""

# Two or more characters: a one-letter "scheme" is a Windows drive (C://data).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")

TRANSFORM_NAME = re.compile(r"[a-z][a-z0-9_-]*")
"""A transform's name: what comes before ``:`` in ``NAME[:OPTIONS]``."""


_T = TypeVar("_T", bound="FromUrl")


class FromUrl:
    """How a backend class is built from a URL; the base classes of sinks, stores
    and sources inherit it."""

    uses_concurrency: ClassVar[bool] = False
    """Whether :meth:`from_url` takes the run's
    :class:`~aep_extract.ConcurrencyConfig` as ``concurrency`` (to size a
    connection pool or rate limits); :func:`open_url` passes it only then."""

    @classmethod
    def check_url(cls, url: str) -> None:
        """Check a URL's form, opening nothing: no client built, no file touched
        (override; the default accepts every URL of the scheme).

        Raises:
            ConfigError: the URL is malformed for this backend.
        """

    @classmethod
    def from_url(cls: type[_T], url: str, **options: Any) -> _T:
        """Build the backend a URL names (override where the URL is not the
        constructor's first argument, as it is by default).

        Args:
            url: the URL, its scheme one this class is registered for.
            **options: the constructor's keyword arguments.

        Raises:
            ConfigError: a malformed URL or invalid options.
        """
        cls.check_url(url)
        return cast("Any", cls)(url, **options)  # type: ignore[no-any-return]


@attrs.frozen
class Backend:
    """One registered backend.

    Attributes:
        scheme: the URL scheme, lower case, without ``://``.
        target: the class as ``"package.module:Class"``, imported on first use (or
            the class itself).
        forms: how its URLs are written, for help texts (``"s3://BUCKET/PREFIX"``).
        summary: what it is, in a few words.
        extra: the ``pip install 'aep-extract[EXTRA]'`` extra its imports need.
        kind: the kind it is registered as, when known; a transform's
            ``scheme`` is its name (``project``), not a URL scheme.
    """

    scheme: str
    target: Union[str, type]
    forms: tuple[str, ...]
    summary: str = ""
    extra: Optional[str] = None
    kind: Optional[Kind] = None

    @property
    def label(self) -> str:
        """How messages name it (``s3://``, or ``transform project``)."""
        if self.kind == "transform":
            return f"transform {self.scheme}"
        return f"{self.scheme}://"

    @property
    def target_name(self) -> str:
        """The class's import path, ``package.module.Class``."""
        if isinstance(self.target, str):
            return self.target.replace(":", ".")
        return f"{self.target.__module__}.{self.target.__qualname__}"

    def load(self) -> type:
        """Import and return the backend's class.

        Raises:
            ConfigError: its module or a package it needs cannot be imported.
        """
        if not isinstance(self.target, str):
            return self.target
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"; pip install 'aep-extract[{self.extra}]'" if self.extra else ""
            raise ConfigError(
                f"{self.label} backend {self.target_name} cannot be imported: "
                f"{exc}{hint}"
            ) from exc
        try:
            loaded: type = getattr(module, class_name)
        except AttributeError:
            raise ConfigError(
                f"{self.label} backend: {module_name} has no {class_name}"
            ) from None
        return loaded


_BUILTIN: dict[Kind, tuple[Backend, ...]] = {
    "sink": (
        Backend(
            "file",
            "aep_extract.sinks.local:LocalSink",
            ("DIR", "file:///DIR"),
            "files under a local directory",
        ),
        Backend(
            "s3",
            "aep_extract.sinks.s3:S3Sink",
            ("s3://BUCKET/PREFIX",),
            "objects under PREFIX/ in an S3 bucket",
        ),
        Backend(
            "azure",
            "aep_extract.sinks.azure:AzureBlobSink",
            ("azure://CONTAINER/PREFIX",),
            "block blobs under PREFIX/ in an Azure Blob Storage container",
            extra="azure",
        ),
        Backend(
            "memory",
            "aep_extract.sinks.memory:MemorySink",
            ("memory://",),
            "kept in this process's memory; for trying things out",
        ),
    ),
    "store": (
        Backend(
            "dynamodb",
            "aep_extract.checkpoints.dynamodb:DynamoDBCheckpointStore",
            ("dynamodb://TABLE",),
            "a DynamoDB table, for many workers on many hosts",
        ),
        Backend(
            "sqlite",
            "aep_extract.checkpoints.sqlite:SQLiteCheckpointStore",
            ("sqlite:///relative/path.db", "sqlite:////absolute/path.db", "sqlite://"),
            "a SQLite file (or a private in-memory database), for one host",
        ),
        Backend(
            "memory",
            "aep_extract.checkpoints.memory:MemoryCheckpointStore",
            ("memory://",),
            "this process only",
        ),
    ),
    "source": (
        Backend(
            "aep",
            "aep_extract.sources.http:HttpAepSource",
            ("aep://",),
            "the Catalog and Data Access APIs, configured by AEP_* variables",
        ),
    ),
    "transform": tuple(
        Backend(name, target, forms, summary, extra="parquet", kind="transform")
        for name, target, forms, summary in (
            (
                "project",
                "aep_extract.transforms.project:Project",
                ("project:columns=PATH,...",),
                "keep only these columns; dotted paths reach nested fields",
            ),
            (
                "filter",
                "aep_extract.transforms.filter:Filter",
                ("filter:expr=EXPRESSION",),
                "keep only the rows an expression holds for",
            ),
            (
                "jsonl",
                "aep_extract.transforms.formats:JsonLines",
                ("jsonl",),
                "Parquet to gzipped JSON Lines",
            ),
            (
                "parquet",
                "aep_extract.transforms.formats:Parquet",
                ("parquet:compression=zstd|snappy|gzip|none",),
                "Parquet rewritten with another compression",
            ),
        )
    ),
}

_lock = threading.Lock()
_registry: dict[Kind, dict[str, Backend]] = {}
"""Per kind, the backends by scheme: built-ins, entry points, then :func:`register`."""


def register(
    kind: Kind,
    scheme: str,
    target: Union[str, type],
    *,
    forms: Iterable[str] = (),
    summary: str = "",
    extra: Optional[str] = None,
    clobber: bool = False,
) -> None:
    """Register a backend for a URL scheme, or a transform by name.

    Args:
        kind: ``"sink"``, ``"store"``, ``"source"`` or ``"transform"``.
        scheme: the URL scheme (``"hdfs"`` for ``hdfs://...``); for a transform,
            its name (``"mask"`` for ``--transform mask:...``).
        target: the class, or its import path ``"package.module:Class"`` to import
            it on first use.
        forms: how its URLs are written, for help texts (default ``SCHEME://...``,
            or ``NAME[:OPTIONS]`` for a transform).
        summary: what it is, in a few words.
        extra: the pip extra its imports need, named when they fail.
        clobber: replace a backend already registered for the scheme.

    Raises:
        ConfigError: an unknown kind, a malformed scheme or name, or one taken
            (without ``clobber``).
    """
    known = _backends_of(kind)
    name = scheme.lower()
    if kind == "transform":
        if not TRANSFORM_NAME.fullmatch(name):
            raise ConfigError(
                f"{scheme!r} is not a transform name (a letter, then letters, "
                "digits, '_' or '-')"
            )
    elif not re.fullmatch(r"[a-z][a-z0-9+.-]+", name):
        raise ConfigError(f"{scheme!r} is not a URL scheme of two or more characters")
    if name in known and not clobber:
        what = (
            f"transform {name}" if kind == "transform" else f"{kind} scheme {name}://"
        )
        raise ConfigError(
            f"{what} is registered to {known[name].target_name}; "
            "pass clobber=True to replace it"
        )
    if isinstance(target, str) and ":" not in target:
        raise ConfigError(f"target {target!r} must be 'package.module:Class'")
    backend = Backend(
        name, target, tuple(forms) or (_default_form(kind, name),), summary, extra, kind
    )
    with _lock:
        known[name] = backend


def backends(kind: Kind) -> list[Backend]:
    """The backends of a kind, in registration order (built-ins first)."""
    return list(_backends_of(kind).values())


def scheme_of(kind: Kind, url: str) -> str:
    """The scheme of a URL, lower case; for a URL without one, the kind's default
    (``file`` for a sink: a bare path names a directory).

    Raises:
        ConfigError: the URL is empty, or has no scheme and the kind has no default.
    """
    match = _SCHEME.match(text_arg(url, f"{kind} URL"))
    if match is not None:
        return match.group(1).lower()
    if url and kind in DEFAULT_SCHEMES:
        return DEFAULT_SCHEMES[kind]
    raise ConfigError(f"{_describe(url, kind)}; expected {_expected(kind)}")


def get_class(kind: Kind, url: str) -> type[Any]:
    """The class of the backend a URL names, imported.

    Raises:
        ConfigError: no backend has the URL's scheme, or it cannot be imported.
    """
    scheme = scheme_of(kind, url)
    backend = _backends_of(kind).get(scheme)
    if backend is None:
        raise ConfigError(f"{_describe(url, kind)}; expected {_expected(kind)}")
    loaded = backend.load()
    if not issubclass(loaded, FromUrl):
        raise ConfigError(
            f"{scheme}:// {kind} backend {backend.target_name} is not a "
            f"{kind} class (it has no from_url)"
        )
    return loaded


def open_url(kind: Kind, url: str, *, concurrency: Any = None, **options: Any) -> Any:
    """Build the backend a URL names: its class's ``from_url(url, **options)``.

    Args:
        kind: ``"sink"``, ``"store"`` or ``"source"``.
        url: the URL.
        concurrency: a :class:`~aep_extract.ConcurrencyConfig`, passed on to a
            class that :attr:`~FromUrl.uses_concurrency`.
        **options: passed on to ``from_url``.

    Raises:
        ConfigError: see :func:`get_class` and the class's ``from_url``.
    """
    cls = get_class(kind, url)
    if concurrency is not None and cls.uses_concurrency:
        options["concurrency"] = concurrency
    return cls.from_url(url, **options)


def check_url(kind: Kind, url: str) -> None:
    """Check that a URL names a backend of the kind and has its form, opening
    nothing (the class is imported).

    Raises:
        ConfigError: see :func:`get_class` and the class's ``check_url``.
    """
    get_class(kind, url).check_url(url)


def url_rest(url: str) -> str:
    """What follows ``scheme://`` in a URL (the whole of a URL without a scheme)."""
    match = _SCHEME.match(url)
    return url[match.end() :] if match else url


def require_bare(kind: Kind, url: str) -> None:
    """Refuse a URL with anything after ``scheme://`` (``memory://x``).

    Raises:
        ConfigError: something follows the scheme.
    """
    if url_rest(url) not in ("", "/"):
        raise ConfigError(
            f"{kind} URL {url!r}: nothing may follow {scheme_of(kind, url)}://"
        )


def forms(kind: Kind) -> str:
    """Every URL form of a kind, comma-separated, for help texts and messages."""
    return ", ".join(form for backend in backends(kind) for form in backend.forms)


def _default_form(kind: Kind, name: str) -> str:
    return f"{name}[:OPTIONS]" if kind == "transform" else f"{name}://..."


def _describe(url: str, kind: Kind) -> str:
    return f"empty {kind} URL" if not url else f"unsupported {kind} URL {url!r}"


def _expected(kind: Kind) -> str:
    return f"one of: {forms(kind)}"


def _backends_of(kind: Kind) -> dict[str, Backend]:
    if kind not in ENTRY_POINT_GROUPS:
        raise ConfigError(f"unknown backend kind {kind!r}; expected {KINDS}")
    with _lock:
        known = _registry.get(kind)
        if known is None:
            known = {backend.scheme: backend for backend in _BUILTIN.get(kind, ())}
            for entry in _entry_points(ENTRY_POINT_GROUPS[kind]):
                name = entry.name.lower()
                # A built-in wins: an installed package cannot silently take s3://.
                form = _default_form(kind, name)
                known.setdefault(name, Backend(name, entry.value, (form,), kind=kind))
            _registry[kind] = known
        return known


def _entry_points(group: str) -> Iterable[EntryPoint]:
    from importlib import metadata  # on first lookup: it costs start-up time

    if sys.version_info < (3, 10):
        return metadata.entry_points().get(group, ())
    return metadata.entry_points(group=group)


def reset() -> None:
    """Forget run-time registrations and re-read entry points (for tests)."""
    with _lock:
        _registry.clear()
