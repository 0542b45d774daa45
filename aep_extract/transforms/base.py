"""The Transform interface: one source file in, one or more whole outputs out.

A transform reads the source file as a stream and writes each output through
:class:`Outputs`, which puts it in the sink with :meth:`Sink.open_write
<aep_extract.Sink.open_write>` (visible only when whole) at a key derived from the
key the file would have had: ``part-0.parquet`` with suffix ``.jsonl.gz`` becomes
``part-0.jsonl.gz``.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Callable, ClassVar, Optional

import attrs

from ..errors import ConfigError, TransformError, UnsafeKeyError
from ..layout import check_key
from ..models import FileRef, TransformOutput, WorkUnit
from ..sinks.base import Sink


@attrs.frozen(kw_only=True)
class TransformContext:
    """What a transform knows about the file it is given.

    Attributes:
        unit: the work unit the file belongs to.
        file: the source file as listed (``file.length`` is the byte count the
            stream is checked against).
        key: the key the file would have had without a transform.
        spool_dir: where a transform that needs random access may spool the source
            (a local directory; None for the system's temporary directory).
    """

    unit: WorkUnit
    file: FileRef
    key: str
    spool_dir: Optional[str] = None


_CODEC_INFIXES = frozenset({"snappy", "gz", "gzip", "zstd", "lz4", "brotli", "none"})
"""The compression a writer names before the extension (Spark's
``part-0.snappy.parquet``): not true of an output, so not kept in its key."""


def output_key(key: str, suffix: str) -> str:
    """The key of an output: ``key`` without its last extension (and a codec
    before it, as in ``.snappy.parquet``), then ``suffix``.

    ``a/part-0.snappy.parquet`` with ``.jsonl.gz`` gives ``a/part-0.jsonl.gz``; a
    name without an extension (or only a leading dot) keeps its whole name.

    Raises:
        UnsafeKeyError: the suffix is empty, holds a ``/``, or makes an unsafe key.
    """
    if not suffix or "/" in suffix:
        raise UnsafeKeyError(f"output suffix {suffix!r} must be non-empty, with no '/'")
    folder, _, name = key.rpartition("/")
    stem, dot, _ = name.rpartition(".")
    base = stem if dot and stem else name
    head, dot, codec = base.rpartition(".")
    if dot and head and codec.lower() in _CODEC_INFIXES:
        base = head
    return check_key(f"{folder}/{base}{suffix}" if folder else f"{base}{suffix}")


def output_keys(transform: Transform, key: str) -> list[str]:
    """The keys ``transform`` writes for a source file of key ``key``, in order:
    known before it runs, for collision checks and for finding the outputs of an
    earlier run.

    Raises:
        UnsafeKeyError: a suffix makes an unsafe key.
    """
    return [output_key(key, suffix) for suffix in transform.suffixes]


class _HashingWriter:
    """A writable binary file that counts and hashes what passes to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._target.write(view.tobytes())
        self._digest.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        """Nothing to do: the sink's writer buffers."""

    def close(self) -> None:
        """Mark closed; the sink's writer is closed by :class:`Outputs`."""
        self.closed = True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class Outputs:
    """The writer a transform writes its outputs through.

    Built by the caller (:func:`~aep_extract.transforms.run_transform`) for one
    source file. Each output goes to the sink through :meth:`Sink.open_write
    <aep_extract.Sink.open_write>`, so it appears whole or not at all; before an
    output is committed, ``check_source`` confirms the source was read whole and
    matched its listed length.

    Args:
        sink: where the outputs go.
        key: the key the source file would have had.
        suffixes: the suffixes the transform declares (:attr:`Transform.suffixes`).
        check_source: raises unless the source was read to its end and checked.
        metadata: stored with every output (proof of its source and transform).
    """

    def __init__(
        self,
        sink: Sink,
        key: str,
        suffixes: Sequence[str],
        *,
        check_source: Callable[[], None],
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        if not suffixes:
            raise TransformError("a transform must declare at least one output")
        self._sink = sink
        self._keys = {suffix: output_key(key, suffix) for suffix in suffixes}
        self._check_source = check_source
        self._metadata = dict(metadata or {})
        self._written: dict[str, TransformOutput] = {}
        self._open: set[str] = set()

    @contextlib.contextmanager
    def open(self, suffix: str) -> Iterator[BinaryIO]:
        """Write the output of a declared suffix; it is committed when the block
        exits cleanly, after the source is checked whole.

        Raises:
            TransformError: the suffix is not declared, or written twice; or the
                source was not read to its end before the block exited.
            IncompleteDownload: the source was shorter or longer than listed.
        """
        key = self._keys.get(suffix)
        if key is None:
            declared = ", ".join(repr(s) for s in self._keys)
            raise TransformError(
                f"output suffix {suffix!r} is not declared (declared: {declared})"
            )
        if suffix in self._written or suffix in self._open:
            raise TransformError(f"output {key} written twice")
        self._open.add(suffix)
        try:
            with self._sink.open_write(key, metadata=self._metadata) as target:
                out = _HashingWriter(target)
                yield out  # type: ignore[misc]  # a BinaryIO's write/tell/flush
                # Inside the sink's block: a failed check leaves no object.
                self._check_source()
        finally:
            self._open.discard(suffix)
        self._written[suffix] = TransformOutput(
            key=key, size=out.size, sha256=out.hexdigest()
        )

    def finish(self) -> list[TransformOutput]:
        """The outputs, in declared order, once every declared one is written.

        Raises:
            TransformError: a declared output was not written, or the source
                was not read to its end.
            IncompleteDownload: the source was longer than listed.
        """
        self._check_source()
        missing = [
            key for suffix, key in self._keys.items() if suffix not in self._written
        ]
        if missing:
            raise TransformError(f"outputs not written: {', '.join(missing)}")
        return [self._written[suffix] for suffix in self._keys]


class Transform(abc.ABC):
    """Turns one source file into one or more output objects at deterministic keys.

    A subclass declares the :attr:`suffixes` of its outputs and writes each in
    :meth:`apply`. It must read the source to its end before any output's block
    exits (the caller checks the source's length then, and refuses the output
    otherwise), and it must write the same bytes for the same input. Registered
    under a name (:func:`aep_extract.registry.register` with kind ``"transform"``,
    or the entry point group ``aep_extract.transforms``), it is built from
    ``NAME:key=value;...`` by :meth:`from_options`.
    """

    name: ClassVar[str] = ""
    """The name it is registered under, for messages (the class name if empty)."""

    option_help: ClassVar[Mapping[str, str]] = {}
    """The options :meth:`from_options` accepts, with a few words on each."""

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Transform:
        """Build the transform from the options of its spec (override to parse
        them; the default checks their names and passes them to the constructor
        as keywords).

        Raises:
            ConfigError: an unknown option or a bad value.
        """
        cls.check_options(options)
        return cls(**options)

    @classmethod
    def check_options(
        cls, options: Mapping[str, str], *, required: Sequence[str] = ()
    ) -> None:
        """Refuse options not in :attr:`option_help`, and missing ``required`` ones.

        Raises:
            ConfigError: an unknown or a missing option.
        """
        name = cls.name or cls.__name__
        unknown = sorted(set(options) - set(cls.option_help))
        if unknown:
            known = ", ".join(cls.option_help) or "none"
            raise ConfigError(
                f"transform {name}: unknown option {unknown[0]!r}; options: {known}"
            )
        for option in required:
            if option not in options:
                raise ConfigError(
                    f"transform {name} needs {option}= ({cls.option_help[option]})"
                )

    @property
    @abc.abstractmethod
    def spec(self) -> str:
        """Its canonical ``NAME[:OPTIONS]`` text: recorded with its outputs, so
        that outputs of another transform are not taken for its own."""

    @property
    @abc.abstractmethod
    def suffixes(self) -> tuple[str, ...]:
        """The suffix of each output, replacing the source key's extension."""

    @abc.abstractmethod
    def apply(self, source: BinaryIO, context: TransformContext, out: Outputs) -> None:
        """Read ``source`` to its end and write every declared output to ``out``.

        Raises:
            TransformError: the file cannot be transformed.
        """

    def then(self, following: Transform) -> Transform:
        """This transform followed by another, as one (override where they fuse;
        the default refuses).

        Raises:
            ConfigError: the two do not compose.
        """
        raise ConfigError(
            f"transform {self.spec!r} cannot be followed by {following.spec!r}"
        )
