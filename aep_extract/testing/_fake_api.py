"""Catalog and Data Access routes of the fake platform, with Adobe's response shapes.

Shapes follow ``reference/aep-api.md`` and Adobe's OpenAPI specs: Catalog answers are
objects keyed by id (``start``/``limit`` paging, no links); Data Access answers are
``{"data": [...], "_page": {...}, "_links": {"next": ...}}`` with at most 100 entries.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional
from urllib.parse import quote

from ._fake_data import FakeBatch, FakeDataSetFile, FakeFile, GeneratedBytes
from ._fake_http import Body, FakeRequest, FakeResponse

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
_TERMINAL = frozenset(
    {"success", "active", "failed", "failure", "aborted", "abandoned", "inactive"}
    | {"stalled", "deleted"}
)
_EXPORTED = frozenset({"success", "active"})
_SORTABLE = frozenset({"id", "created", "updated", "status", "name"})
_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
}
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)
_CONTENT_TYPES = {
    ".parquet": "application/parquet",
    ".json": "application/json",
    ".csv": "application/csv",
}
CREATED_CLIENT = "acp_foundation_push"
PREVIEW_ROWS = 100
"""Rows of a dataset preview, as Adobe's (the first 100)."""
ROW_ERRORS_SAMPLE = "row_errors_sample.json"
"""The file of a batch's meta directory."""
_DATASET_KEYS = {
    "lastSuccessfulBatchId": "lastSuccessfulBatch",
    "lastFailedBatchId": "lastFailedBatch",
}
"""A dataset names its last successful and failed batches without ``Id``."""

Entry = Optional[tuple[str, dict[str, Any]]]
"""A Catalog listing entry ``(id, object)``; None stands for a batch the listing
gained that the fake has no data for (it takes a place but is never served)."""
Reorder = Callable[[list[tuple[str, dict[str, Any]]]], Sequence[Entry]]
"""Changes the ordered Catalog batch listing before a page is cut (fault injection)."""


class Problem(Exception):
    """An error answered as problem-details JSON (aep-api.md §4.1)."""

    def __init__(
        self, status: int, detail: str, headers: Optional[dict[str, str]] = None
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self, service: str, sandbox: str) -> FakeResponse:
        """The problem-details response."""
        payload = {
            "type": f"https://ns.adobe.com/aep/errors/{service}-1000-{self.status}",
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "report": {"tenantInfo": {"sandboxName": sandbox}},
        }
        response = FakeResponse.json(
            self.status, payload, "application/problem+json;charset=utf-8"
        )
        return FakeResponse(
            response.status, {**response.headers, **self.headers}, response.body
        )


def view_id(dataset_id: str) -> str:
    """A stable dataSetViewId derived from a dataset id."""
    return hashlib.sha1(f"view:{dataset_id}".encode()).hexdigest()[:24]


def sandbox_id(sandbox: str) -> str:
    """A stable sandboxId derived from a sandbox name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{sandbox}"))


def content_type(name: str) -> str:
    """The Content-Type the Data Access API would send for a file name."""
    for suffix, value in _CONTENT_TYPES.items():
        if name.lower().endswith(suffix):
            return value
    return "application/octet-stream"


def _int_param(
    query: Mapping[str, str], name: str, default: int, low: int, high: Optional[int]
) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"Invalid {name}: {text!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise Problem(400, f"Invalid {name}: {value} (must be {bounds})")
    return value


def parse_range(header: str, total: int) -> Optional[tuple[int, int]]:
    """The inclusive byte span of a ``Range`` header; None to ignore the header.

    Raises:
        Problem: 416 when the range cannot be satisfied.
    """
    match = _RANGE.fullmatch(header)
    if not match or not (match.group(1) or match.group(2)):
        return None  # RFC 9110: an unparseable (or multi-part) Range is ignored
    first_text, last_text = match.groups()
    unsatisfiable = Problem(
        416, f"Range {header!r} not satisfiable", {"Content-Range": f"bytes */{total}"}
    )
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or total == 0:
            raise unsatisfiable
        return max(0, total - suffix), total - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # an invalid range is ignored too
    if first >= total:
        raise unsatisfiable
    last = min(int(last_text), total - 1) if last_text else total - 1
    return first, last


def file_response(request: FakeRequest, file: FakeFile) -> FakeResponse:
    """The bytes of a file: 200 whole, or 206 for a satisfiable ``Range``."""
    headers = {"Content-Type": content_type(file.name), "Accept-Ranges": "bytes"}
    header = request.headers.get("Range")
    span = parse_range(header, file.length) if header is not None else None
    if span is None:
        return FakeResponse(200, headers, file.content, file_bytes=True)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{file.length}"
    content = file.content
    if isinstance(content, GeneratedBytes):
        body: Body = content.window(first, last + 1)
    else:
        body = memoryview(content)[first : last + 1]
    return FakeResponse(206, headers, body, file_bytes=True)


def batch_json(batch: FakeBatch, org_id: str, sandbox: str) -> dict[str, Any]:
    """A batch as Catalog returns it (aep-api.md §2.3, spec ``batchResponse``).

    ``tags`` are the generated ``flowId`` plus the batch's own; ``replay`` is served
    (as a copy) when the batch has one.
    """
    created = batch.created_ms
    body: dict[str, Any] = {
        "id": batch.batch_id,
        "imsOrg": org_id,
        "sandboxId": sandbox_id(sandbox),
        "status": batch.status,
        "created": created,
        "updated": _updated_ms(batch),
        "started": created + 1_000,
        "createdClient": CREATED_CLIENT,
        "createdUser": f"{CREATED_CLIENT}@AdobeID",
        "updatedUser": f"{CREATED_CLIENT}@AdobeID",
        "externalId": batch.batch_id,
        "version": "1.0.5",
        "inputFormat": {"format": "parquet"},
        "relatedObjects": [{"type": "dataSet", "id": batch.dataset_id}],
        "errors": [dict(error) for error in batch.errors],
        "tags": {
            "flowId": [str(uuid.uuid5(uuid.NAMESPACE_URL, batch.batch_id))],
            **{name: list(values) for name, values in batch.tags.items()},
        },
    }
    if batch.replay is not None:
        body["replay"] = copy.deepcopy(batch.replay)
    if batch.status in _TERMINAL:
        body["completed"] = created + 60_000
    if batch.status in _EXPORTED:
        size, count = batch.size, batch.file_count
        records = size // 100
        body["recordCount"], body["size"] = records, size
        body["metrics"] = {
            "inputByteSize": size,
            "inputFileCount": count,
            "inputRecordCount": records,
            "outputByteSize": size,
            "outputFileCount": count,
            "outputRecordCount": records,
            "partitionCount": 1,
            "failedRecordCount": 0,
        }
    return body


def _updated_ms(batch: FakeBatch) -> int:
    return batch.created_ms + (60_000 if batch.status in _TERMINAL else 5_000)


def dataset_json(
    dataset_id: str,
    overrides: Mapping[str, Any],
    batches: list[FakeBatch],
    org_id: str,
) -> dict[str, Any]:
    """A dataset as Catalog returns it (aep-api.md §2.5), ``overrides`` on top."""
    view = view_id(dataset_id)
    name = str(overrides.get("name", dataset_id))
    times = [batch.created_ms for batch in batches] or [1_586_715_000_000]
    body: dict[str, Any] = {
        "name": name,
        "description": "",
        "version": "1.0.0",
        "imsOrg": org_id,
        "created": min(times) - 86_400_000,
        "updated": max(times),
        "createdClient": CREATED_CLIENT,
        "createdUser": f"{CREATED_CLIENT}@AdobeID",
        "updatedUser": f"{CREATED_CLIENT}@AdobeID",
        "viewId": view,
        "files": f"@/dataSets/{dataset_id}/views/{view}/files",
        "schemaRef": {
            "id": f"https://ns.adobe.com/fake/schemas/{view_id(name)}",
            "contentType": "application/vnd.adobe.xed+json;version=1",
        },
        "tags": {"adobe/pqs/table": [re.sub(r"\W+", "_", name.lower()).strip("_")]},
        "classification": {"dataBehavior": "time-series", "managedBy": "CUSTOMER"},
    }
    body.update(
        {_DATASET_KEYS.get(key, key): value for key, value in _last(batches).items()}
    )
    body.update(overrides)
    return body


def last_batches_json(
    batches: list[FakeBatch], org_id: str, sandbox: str
) -> Optional[dict[str, Any]]:
    """A dataset's ``/lastBatches`` entry (spec ``lastBatchesResponse``); None for a
    dataset without batches."""
    last = _latest(batches)
    if last is None:
        return None
    return {
        **_last(batches),
        "imsOrg": org_id,
        "sandboxId": sandbox_id(sandbox),
        "created": last.created_ms,
        "updated": _updated_ms(last),
    }


def _latest(batches: Iterable[FakeBatch]) -> Optional[FakeBatch]:
    return max(batches, key=lambda b: (b.created_ms, b.batch_id), default=None)


def _last(batches: list[FakeBatch]) -> dict[str, str]:
    """``lastBatchId``, ``lastBatchStatus``, ``lastSuccessfulBatchId`` and
    ``lastFailedBatchId``, of those there are."""
    found: dict[str, str] = {}
    last = _latest(batches)
    if last is not None:
        found["lastBatchId"], found["lastBatchStatus"] = last.batch_id, last.status
    for key, statuses in (
        ("lastSuccessfulBatchId", _EXPORTED),
        ("lastFailedBatchId", {"failed", "failure"}),
    ):
        match = _latest(batch for batch in batches if batch.status in statuses)
        if match is not None:
            found[key] = match.batch_id
    return found


def preview_rows(batches: Iterable[FakeBatch]) -> list[dict[str, str]]:
    """``/datasets/{id}/preview`` rows: the fake's files are opaque bytes, so a row
    describes a file of an exportable batch (first 100, in listing order)."""
    rows = (
        {
            "batchId": batch.batch_id,
            "dataSetFileId": leaf_id,
            "name": file.name,
            "length": str(file.length),
        }
        for batch in batches
        if batch.status in _EXPORTED
        for leaf_id, file in batch.leaf_files()
    )
    return list(itertools.islice(rows, PREVIEW_ROWS))


def meta_files(batch: FakeBatch) -> tuple[FakeFile, ...]:
    """A batch's meta directory (``/batches/{id}/meta``): the sampled row errors."""
    sample = json.dumps([dict(error) for error in batch.errors]).encode()
    return (FakeFile(ROW_ERRORS_SAMPLE, sample),)


def dataset_file_item(
    node: FakeDataSetFile, batch: FakeBatch, base_url: str
) -> dict[str, Any]:
    """A dataSetFileId entry (aep-api.md §3.2): times as strings of epoch ms."""
    created = str(batch.created_ms + 30_000)
    return {
        "dataSetFileId": node.dataset_file_id,
        "dataSetViewId": view_id(batch.dataset_id),
        "version": "1.0.0",
        "created": created,
        "updated": created,
        "size": str(node.size),
        "isValid": True,
        "_links": {"self": {"href": f"{base_url}{files_path(node.dataset_file_id)}"}},
    }


def physical_item(file: FakeFile, href: str) -> dict[str, Any]:
    """A physical file entry (aep-api.md §3.3, §3.5): ``length`` is a string."""
    link = f"{href}?path={quote(file.name, safe='')}"
    return {
        "name": file.name,
        "length": str(file.length),
        "_links": {"self": {"href": link}},
    }


def files_path(dataset_file_id: str) -> str:
    """The Data Access path of a dataSetFileId."""
    return f"{EXPORT}/files/{quote(dataset_file_id, safe='')}"


def data_page(
    query: Mapping[str, str], items: list[dict[str, Any]], url: str
) -> FakeResponse:
    """One Data Access page of ``items`` (``start`` offset, ``limit`` at most 100)."""
    start = _int_param(query, "start", 0, 0, None)
    limit = min(_int_param(query, "limit", 100, 1, None), 100)
    body: dict[str, Any] = {
        "data": items[start : start + limit],
        "_page": {"limit": limit, "count": len(items)},
    }
    if start + limit < len(items):
        body["_links"] = {
            "next": {"href": f"{url}?start={start + limit}&limit={limit}"}
        }
    return FakeResponse.json(200, body)


def catalog_page(
    query: Mapping[str, str],
    objects: Iterable[tuple[str, dict[str, Any]]],
    reorder: Optional[Reorder] = None,
) -> FakeResponse:
    """One Catalog page: ordered, cut by ``start``/``limit`` and ``properties``.

    ``reorder`` (fault injection) changes the ordered listing before the page is cut;
    its None entries stand for batches without data and are left out of the page.
    """
    limit = _int_param(query, "limit", 20, 1, 100)
    start = _int_param(query, "start", 0, 0, None)
    ordered = order_objects(list(objects), query.get("orderBy"))
    entries = reorder(ordered) if reorder is not None else ordered
    page = [entry for entry in entries[start : start + limit] if entry is not None]
    return FakeResponse.json(200, {key: select(obj, query) for key, obj in page})


def order_objects(
    objects: list[tuple[str, dict[str, Any]]], order_by: Optional[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Sort by ``orderBy`` (``asc:created,desc:id`` ...), default created then id."""
    terms = [term.strip() for term in (order_by or "asc:created").split(",")]
    result = sorted(objects, key=lambda pair: pair[0])
    for term in reversed([term for term in terms if term]):
        direction, _, field = term.rpartition(":")
        if direction.lower() not in ("", "asc", "desc") or field not in _SORTABLE:
            raise Problem(400, f"Invalid orderBy term {term!r}")
        key = _sort_key(field)
        result.sort(key=key, reverse=direction.lower() == "desc")
    return result


def _sort_key(field: str) -> Callable[[tuple[str, dict[str, Any]]], tuple[bool, Any]]:
    if field == "id":
        return lambda pair: (False, pair[0])
    return lambda pair: (field not in pair[1], pair[1].get(field, 0))


def select(obj: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``properties``: keep only the listed top-level fields."""
    text = query.get("properties")
    if text is None:
        return obj
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    return {key: value for key, value in obj.items() if key in wanted}
