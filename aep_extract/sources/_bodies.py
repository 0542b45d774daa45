"""Reading answer bodies whole, with bounds: size, length and encoding checked.

JSON answers and error bodies are read here (file bytes stream in
:meth:`~.http.HttpAepSource.read_file`). Nothing trusts the server: the body is read
raw from the socket in pieces, decompressed here (``gzip`` or ``deflate`` only, never
past the size cap, so a small compressed body cannot expand without bound), checked
against its ``Content-Length`` and refused once it grows past the cap.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Optional

import requests

from ..errors import IncompleteDownload, InvalidResponse

PIECE = 64 * 1024
"""Bytes read from the socket at a time."""
MAX_JSON_BYTES = 32 * 1024 * 1024
"""Largest JSON answer accepted (decoded). A Catalog page of 100 batches is well
under 1 MiB; an answer that never ends is refused here rather than filling memory."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}
"""zlib's window bits per encoding (``deflate``: 0 reads the zlib header's)."""


def content_encoding(response: requests.Response) -> str:
    """The answer's ``Content-Encoding``, lower case; ``identity`` when absent."""
    return response.headers.get("Content-Encoding", "").strip().lower() or "identity"


def announced_length(response: requests.Response) -> Optional[int]:
    """The ``Content-Length`` as an integer, or None when absent or unreadable."""
    text = response.headers.get("Content-Length", "").strip()
    return int(text) if text.isdigit() else None


def read_bounded(response: requests.Response, limit: int, where: str) -> bytes:
    """The whole decoded body of ``response``, at most ``limit`` bytes.

    Args:
        response: a streamed answer whose body is unread.
        limit: the largest decoded body accepted.
        where: how messages name the request (``"GET /path"``).

    Raises:
        InvalidResponse: the body is larger than ``limit``, or in an encoding other
            than identity, gzip or deflate, or not valid in its encoding.
        IncompleteDownload: the body ended before its ``Content-Length`` or before
            its compressed stream did (retryable).
    """
    encoding = content_encoding(response)
    if encoding != "identity" and encoding not in _WBITS:
        raise InvalidResponse(f"{where}: answer in unsupported encoding {encoding!r}")
    decoder = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
    announced = announced_length(response)
    raw = response.raw
    raw.enforce_content_length = False  # checked below, the same way on urllib3 1 and 2
    parts: list[bytes] = []
    size = received = 0
    while True:
        piece = raw.read(PIECE, decode_content=False)
        if not piece:
            break
        received += len(piece)
        data = (
            piece if decoder is None else _inflate(decoder, piece, limit - size, where)
        )
        size += len(data)
        if size > limit:
            raise InvalidResponse(f"{where}: answer larger than {limit} bytes")
        parts.append(data)
    if announced is not None and received < announced:
        raise IncompleteDownload(
            f"{where}: body ended after {received} of {announced} bytes"
        )
    if decoder is not None and not decoder.eof:
        raise IncompleteDownload(f"{where}: {encoding} body ended early")
    return b"".join(parts)


def _inflate(decoder: Any, piece: bytes, room: int, where: str) -> bytes:
    """Decompress ``piece``: at most ``room + 1`` bytes, enough to see a cap passed
    (zlib then keeps the rest of the input unread)."""
    try:
        return bytes(decoder.decompress(piece, room + 1))
    except zlib.error as exc:
        raise InvalidResponse(f"{where}: compressed body is corrupt: {exc}") from None


def parse_json(data: bytes, where: str, status: int) -> Any:
    """``data`` as JSON.

    Raises:
        InvalidResponse: it is not JSON.
    """
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidResponse(
            f"{where}: HTTP {status} answer is not valid JSON"
        ) from None
