"""The layout of an object written in parts, shared by the sinks and the engine.

Part ``n`` (from 1) of an object of ``size`` bytes holds bytes
``[(n - 1) * part_size, min(n * part_size, size))``; every part but the last is
``part_size`` bytes. Checksums of parts are base64 SHA-256, as S3 gives them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Union

from ..errors import SinkError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # exists only for type checkers


Part = Union[bytes, bytearray]
"""The bytes of one part (the engine fills a bytearray in place)."""


def part_count(size: int, part_size: int) -> int:
    """How many parts an object of ``size`` bytes has (at least one)."""
    return max(1, -(-size // part_size))


def part_range(number: int, size: int, part_size: int) -> tuple[int, int]:
    """Bytes ``[start, end)`` of part ``number`` of an object of ``size`` bytes.

    Raises:
        SinkError: no such part.
    """
    if not 1 <= number <= part_count(size, part_size):
        raise SinkError(f"no part {number} in {size} bytes of {part_size}-byte parts")
    start = (number - 1) * part_size
    return start, min(start + part_size, size)


def part_sha256(data: ReadableBuffer) -> str:
    """The base64 SHA-256 of a part's bytes (S3's ``ChecksumSHA256``)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def check_part(label: str, number: int, data: Part, size: int, part_size: int) -> None:
    """Refuse a part whose byte count is not its range's.

    Raises:
        SinkError: no such part, or ``data`` has the wrong length.
    """
    start, end = part_range(number, size, part_size)
    if len(data) != end - start:
        raise SinkError(
            f"{label!r}: part {number} has {len(data)} bytes, expected {end - start}"
        )


def check_complete(
    label: str, numbers: Iterable[int], size: int, part_size: int
) -> None:
    """Refuse to complete unless ``numbers`` are exactly the object's parts.

    Raises:
        SinkError: a part is missing or unknown.
    """
    expected = set(range(1, part_count(size, part_size) + 1))
    got = set(numbers)
    if got != expected:
        missing = sorted(expected - got)[:5]
        raise SinkError(
            f"{label!r}: cannot complete: parts {missing} missing, "
            f"{sorted(got - expected)[:5]} unknown"
        )
