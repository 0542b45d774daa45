"""Pure checks of Catalog and Data Access answers: documented shapes in, models out.

Everything here raises :class:`~aep_extract.errors.InvalidResponse` (or, for a range
that came back wrong, :class:`~aep_extract.errors.IncompleteDownload`) and does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import quote

from ..errors import IncompleteDownload, InvalidResponse
from ..models import Batch, FileRef

_DIGITS = re.compile(r"[0-9]+")
_CONTENT_RANGE = re.compile(r"bytes\s+([0-9]+)-([0-9]+)/([0-9]+)\s*")


def parse_batch(batch_id: str, obj: object, dataset_id: str) -> Batch:
    """A Catalog batch from its key and object (the key is the id: ``id`` inside is
    optional per the spec).

    Unknown status strings pass through: deciding what they mean is the extractor's job.

    Raises:
        InvalidResponse: not an object, or ``created``/``status`` missing or invalid.
    """
    if not isinstance(obj, dict):
        raise InvalidResponse(f"batch {batch_id}: Catalog entry is not an object")
    created = _as_int(obj.get("created"))
    if created is None:
        raise InvalidResponse(
            f"batch {batch_id}: missing or invalid 'created' {obj.get('created')!r}"
        )
    status = obj.get("status")
    if not isinstance(status, str) or not status:
        raise InvalidResponse(f"batch {batch_id}: missing or invalid 'status'")
    errors = obj.get("errors")
    tags = obj.get("tags")
    replay = obj.get("replay")
    if not isinstance(replay, dict):
        replay = {}
    reason = replay.get("reason")
    return Batch(
        batch_id=batch_id,
        dataset_id=dataset_id,
        status=status,
        created_ms=created,
        errors=tuple(e for e in errors if isinstance(e, dict))
        if isinstance(errors, list)
        else (),
        successors=_strings(
            tags.get("acp_successor") if isinstance(tags, dict) else None
        ),
        predecessors=_strings(replay.get("predecessors")),
        replay_reason=reason if isinstance(reason, str) else None,
        raw=obj,
    )


def _strings(value: object) -> tuple[str, ...]:
    """The non-empty strings of a JSON array (anything else: none)."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str) and item)


def related_to_dataset(obj: dict[str, Any], dataset_id: str) -> bool:
    """Whether a batch's ``relatedObjects`` name the dataset."""
    related = obj.get("relatedObjects")
    if not isinstance(related, list):
        return False
    return any(
        isinstance(item, dict)
        and item.get("type") == "dataSet"
        and item.get("id") == dataset_id
        for item in related
    )


def is_physical_file(item: dict[str, Any]) -> bool:
    """A ``/files/{id}`` item naming bytes (``name`` + ``length``), not a directory."""
    return "name" in item and "length" in item


def dataset_file_id(item: dict[str, Any], where: str) -> str:
    """The ``dataSetFileId`` of a batch-listing or sub-directory item.

    Raises:
        InvalidResponse: it is missing or not a non-empty string.
    """
    value = item.get("dataSetFileId")
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"{where}: item without a valid dataSetFileId")
    return value


def file_ref(file_id: str, item: dict[str, Any], listing_url: str) -> FileRef:
    """A physical file item (``name``, string ``length``, ``_links.self.href``).

    Without a self link the URL is built as ``{listing_url}?path={name}``, which is
    how both ``/files/{id}`` and ``/batches/{id}/failed`` serve a file's bytes.

    Raises:
        InvalidResponse: empty name, or a length that is not a non-negative integer.
    """
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidResponse(f"file {file_id}: item with an empty or invalid name")
    length = _as_int(item.get("length"))
    if length is None:
        raise InvalidResponse(
            f"file {file_id}/{name}: invalid length {item.get('length')!r}"
        )
    return FileRef(
        dataset_file_id=file_id,
        name=name,
        length=length,
        url=self_href(item) or f"{listing_url}?path={quote(name, safe='')}",
    )


def self_href(item: dict[str, Any]) -> Optional[str]:
    """``item["_links"]["self"]["href"]`` when present."""
    return _href(item, "self")


def next_href(page: dict[str, Any]) -> Optional[str]:
    """``page["_links"]["next"]["href"]`` when present."""
    return _href(page, "next")


def _href(obj: dict[str, Any], rel: str) -> Optional[str]:
    links = obj.get("_links")
    link = links.get(rel) if isinstance(links, dict) else None
    href = link.get("href") if isinstance(link, dict) else None
    return href if isinstance(href, str) and href else None


def _as_int(value: object) -> Optional[int]:
    # Catalog sends epoch ms as numbers, Data Access sends numbers as strings.
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


def announced_bytes(
    status: int, headers: Mapping[str, str], pos: int, file: FileRef, where: str
) -> int:
    """How many bytes a file response's body must carry, starting at ``pos``.

    A 206 must start at ``pos`` and report the listed total; a 200 (Range ignored)
    is only usable from byte 0.

    Raises:
        IncompleteDownload: the range starts elsewhere or is unreadable (retryable).
        InvalidResponse: the total differs from the listed length, a whole body
            came back when a later range was asked for, or ``Content-Length``
            disagrees with the range.
    """
    if status == 200:
        if pos != 0:
            raise InvalidResponse(f"{where}: server ignored Range from byte {pos}")
        length = headers.get("Content-Length")
        if length is not None and _as_int(length) != file.length:
            raise InvalidResponse(
                f"{where}: Content-Length {length} differs from the listed length "
                f"{file.length}"
            )
        return file.length
    if status != 206:
        raise InvalidResponse(f"{where}: unexpected HTTP {status} for a ranged GET")
    content_range = headers.get("Content-Range")
    match = _CONTENT_RANGE.fullmatch(content_range or "")
    if match is None:
        raise IncompleteDownload(f"{where}: unreadable Content-Range {content_range!r}")
    first, last, total = (int(group) for group in match.groups())
    if total != file.length:
        raise InvalidResponse(
            f"{where}: Content-Range total {total} differs from the listed length "
            f"{file.length}"
        )
    if first != pos or last < first or last >= total:
        raise IncompleteDownload(
            f"{where}: asked for bytes from {pos}, got Content-Range {content_range!r}"
        )
    span = last - first + 1
    length = headers.get("Content-Length")
    if length is not None and _as_int(length) != span:
        raise InvalidResponse(
            f"{where}: Content-Length {length} differs from the {span} bytes of "
            f"Content-Range {content_range!r}"
        )
    return span
