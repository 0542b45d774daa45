"""The fake platform's services: Catalog and Data Access over indexed batches.

The batches live in an immutable :class:`_Index`; a change builds a new one and swaps
it in under a lock, so a request served meanwhile sees the batches before or after the
change, never a mix.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, Optional
from urllib.parse import quote

import attrs

from . import _fake_api as api
from ._fake_api import Reorder
from ._fake_data import FakeBatch, FakeDataSetFile, FakeFile, check_status
from ._fake_http import FakeRequest, FakeResponse

_Filter = Callable[[FakeBatch, str], bool]


def _int_filter(compare: Callable[[int, int], bool]) -> _Filter:
    def check(batch: FakeBatch, text: str) -> bool:
        try:
            return compare(batch.created_ms, int(text))
        except ValueError:
            raise api.Problem(400, f"Invalid timestamp {text!r}") from None

    return check


_BATCH_FILTERS: dict[str, _Filter] = {
    "dataSet": lambda batch, value: batch.dataset_id == value,
    "batch": lambda batch, value: batch.batch_id == value,
    "status": lambda batch, value: batch.status == value,
    "createdAfter": _int_filter(lambda created, bound: created > bound),
    "createdBefore": _int_filter(lambda created, bound: created < bound),
    "created": _int_filter(lambda created, bound: created == bound),
}

_LAST_BATCH_FILTERS = (
    "lastBatchId",
    "lastBatchStatus",
    "lastSuccessfulBatchId",
    "lastFailedBatchId",
    "created",
    "updated",
)
_BATCH_DIRECTORIES = ("files", "failed", "meta")


class _Index:
    """The batches ordered by created time, then id, with lookups; never changed.

    Raises:
        ValueError: duplicate batch or dataSetFileIds, or a batch of an unknown
            dataset.
    """

    def __init__(self, datasets: Mapping[str, Any], batches: Iterable[FakeBatch]):
        self.batches = tuple(sorted(batches, key=lambda b: (b.created_ms, b.batch_id)))
        self.created = [batch.created_ms for batch in self.batches]
        self.batch_by_id: dict[str, FakeBatch] = {}
        self.node_by_id: dict[str, tuple[FakeBatch, FakeDataSetFile]] = {}
        for batch in self.batches:
            if batch.dataset_id not in datasets:
                raise ValueError(
                    f"batch {batch.batch_id} names unknown dataset {batch.dataset_id}"
                )
            if batch.batch_id in self.batch_by_id:
                raise ValueError(f"duplicate batch id {batch.batch_id}")
            self.batch_by_id[batch.batch_id] = batch
            for node in batch.all_dataset_files():
                if node.dataset_file_id in self.node_by_id:
                    raise ValueError(f"duplicate dataSetFileId {node.dataset_file_id}")
                self.node_by_id[node.dataset_file_id] = (batch, node)

    def of_dataset(self, dataset_id: Optional[str]) -> list[FakeBatch]:
        """The batches of one dataset (None: all), ordered by created time, then id."""
        return [b for b in self.batches if dataset_id in (None, b.dataset_id)]

    def get(self, batch_id: str) -> FakeBatch:
        """The batch with that id.

        Raises:
            KeyError: no such batch.
        """
        batch = self.batch_by_id.get(batch_id)
        if batch is None:
            raise KeyError(f"no batch {batch_id!r}")
        return batch


class FakeServices:
    """Indexes the datasets and batches and answers Catalog and Data Access calls.

    Raises:
        ValueError: duplicate batch or dataSetFileIds, or a batch of an unknown
            dataset.
    """

    def __init__(
        self,
        datasets: Mapping[str, Mapping[str, Any]],
        batches: Iterable[FakeBatch],
        *,
        org_id: str,
        sandbox: str,
    ) -> None:
        self.org_id = org_id
        self.sandbox = sandbox
        self.datasets = {key: dict(value) for key, value in datasets.items()}
        self._index = _Index(self.datasets, batches)
        self._lock = threading.Lock()

    # -- changes (each one atomic) -------------------------------------------------

    def add(self, batches: Iterable[FakeBatch]) -> None:
        """Add batches; ValueError (nothing added) on a clash or an unknown dataset."""
        new = list(batches)
        with self._lock:
            self._index = _Index(self.datasets, [*self._index.batches, *new])

    def set_status(self, batch_id: str, status: str) -> FakeBatch:
        """Change a batch's status; returns the changed batch.

        Raises:
            KeyError: no such batch.
            ValueError: not a Catalog status.
        """
        check_status(status)
        with self._lock:
            changed = attrs.evolve(self._index.get(batch_id), status=status)
            self._replace([changed])
        return changed

    def replay(
        self,
        predecessor_ids: Sequence[str],
        batch: FakeBatch,
        reason: str,
        predecessor_status: Optional[str],
    ) -> FakeBatch:
        """Add ``batch`` replaying the predecessors, which get ``acp_successor``.

        Raises:
            KeyError: an unknown predecessor.
            ValueError: no, repeated or other-dataset predecessors (or a string),
                ``batch`` among them, an unknown status, or ``batch`` clashes with a
                present one.
        """
        if isinstance(predecessor_ids, str):
            raise ValueError("predecessor_ids must be a sequence of ids, not a string")
        ids = list(predecessor_ids)
        if not ids or len(set(ids)) != len(ids) or batch.batch_id in ids:
            raise ValueError(f"need distinct predecessors other than the batch: {ids}")
        if predecessor_status is not None:
            check_status(predecessor_status)
        replay = {
            "predecessors": ids,
            "reason": reason,
            "predecessorListingType": "IMMEDIATE",
        }
        successor = attrs.evolve(batch, replay=replay)
        with self._lock:
            changed = []
            for old in [self._index.get(batch_id) for batch_id in ids]:
                if old.dataset_id != batch.dataset_id:
                    raise ValueError(f"batch {old.batch_id} is of another dataset")
                changed.append(
                    attrs.evolve(
                        old,
                        status=predecessor_status or old.status,
                        tags={**old.tags, "acp_successor": [batch.batch_id]},
                    )
                )
            self._replace(changed, successor)
        return successor

    def _replace(self, changed: Iterable[FakeBatch], *added: FakeBatch) -> None:
        """Swap in batches by id (plus ``added``); call with the lock held."""
        by_id = {batch.batch_id: batch for batch in changed}
        kept = [by_id.get(batch.batch_id, batch) for batch in self._index.batches]
        self._index = _Index(self.datasets, [*kept, *added])

    # -- serving ---------------------------------------------------------------------

    def dispatch(
        self, request: FakeRequest, base_url: str, reorder: Optional[Reorder] = None
    ) -> FakeResponse:
        """Answer a platform call (the gateway checks are done by the caller).

        ``reorder`` changes the Catalog batch listing (fault injection).
        """
        parts = request.segments
        service, rest = "/" + "/".join(parts[:3]), parts[3:]
        code = "DAS" if service == api.EXPORT else "CAT"
        index = self._index  # one snapshot for the whole request
        try:
            if request.method not in ("GET", "HEAD"):
                raise api.Problem(405, "Method not allowed", {"Allow": "GET, HEAD"})
            if service == api.CATALOG:
                return self._catalog(index, request, rest, reorder)
            if service == api.EXPORT:
                return self._export(index, request, rest, base_url)
            raise api.Problem(404, f"No route for {request.path}")
        except api.Problem as problem:
            return problem.response(code, self.sandbox)

    def _catalog(
        self,
        index: _Index,
        request: FakeRequest,
        rest: list[str],
        reorder: Optional[Reorder],
    ) -> FakeResponse:
        if rest == ["batches"]:
            query = request.query
            if reorder is None and query.get("orderBy", "asc:created") == "asc:created":
                # The index is in this order already: build only the batches up to
                # the page's end, so a page of a large catalog costs a page.
                end = api._int_param(query, "start", 0, 0, None) + api._int_param(
                    query, "limit", 20, 1, 100
                )
                matching = itertools.islice(self._matching(index, query), end)
                objects = [(b.batch_id, self._batch_json(b)) for b in matching]
            else:
                objects = self._batch_objects(index, query)
            return api.catalog_page(query, objects, reorder)
        if rest == ["dataSets"]:
            objects = [(key, self._dataset(index, key)) for key in self.datasets]
            return api.catalog_page(request.query, objects)
        if rest == ["lastBatches"]:
            return api.catalog_page(request.query, self._last_batches(index, request))
        if len(rest) == 2 and rest[0] == "batches":
            batch = _batch(index, rest[1])
            body = api.batch_json(batch, self.org_id, self.sandbox)
            return FakeResponse.json(200, {batch.batch_id: body})
        if len(rest) == 2 and rest[0] == "dataSets":
            if rest[1] not in self.datasets:
                raise api.Problem(404, f"Dataset {rest[1]} not found")
            body = api.select(self._dataset(index, rest[1]), request.query)
            return FakeResponse.json(200, {rest[1]: body})
        raise api.Problem(404, f"No route for {request.path}")

    def _export(
        self, index: _Index, request: FakeRequest, rest: list[str], base_url: str
    ) -> FakeResponse:
        if len(rest) == 3 and rest[0] == "batches" and rest[2] in _BATCH_DIRECTORIES:
            batch = _batch(index, rest[1])
            url = f"{base_url}{api.EXPORT}/batches/{quote(batch.batch_id, safe='')}"
            if rest[2] == "failed":
                return self._files(request, batch.failed_files, f"{url}/failed")
            if rest[2] == "meta":
                return self._files(request, api.meta_files(batch), f"{url}/meta")
            items = [
                api.dataset_file_item(node, batch, base_url)
                for node in batch.dataset_files
            ]
            return api.data_page(request.query, items, f"{url}/files")
        if len(rest) == 2 and rest[0] == "files":
            found = index.node_by_id.get(rest[1])
            if found is None:
                raise api.Problem(404, f"Dataset file {rest[1]} not found")
            batch, node = found
            if node.is_directory and "path" not in request.query:
                items = [
                    api.dataset_file_item(child, batch, base_url)
                    for child in node.children
                ]
                return api.data_page(
                    request.query, items, base_url + api.files_path(rest[1])
                )
            href = base_url + api.files_path(node.dataset_file_id)
            return self._files(request, node.files, href)
        if len(rest) == 3 and rest[0] == "datasets" and rest[2] == "preview":
            if rest[1] not in self.datasets:
                raise api.Problem(404, f"Dataset {rest[1]} not found")
            rows = api.preview_rows(index.of_dataset(rest[1]))
            return FakeResponse.json(200, {"data": rows})
        raise api.Problem(404, f"No route for {request.path}")

    def _files(
        self, request: FakeRequest, files: tuple[FakeFile, ...], href: str
    ) -> FakeResponse:
        """A listing of physical files, or with ``path`` the bytes of one."""
        name = request.query.get("path")
        if name is None:
            items = [api.physical_item(file, href) for file in files]
            return api.data_page(request.query, items, href)
        for file in files:
            if file.name == name:
                return api.file_response(request, file)
        raise api.Problem(404, f"File {name!r} not found")

    def _dataset(self, index: _Index, dataset_id: str) -> dict[str, Any]:
        return api.dataset_json(
            dataset_id,
            self.datasets[dataset_id],
            index.of_dataset(dataset_id),
            self.org_id,
        )

    def _last_batches(
        self, index: _Index, request: FakeRequest
    ) -> list[tuple[str, dict[str, Any]]]:
        """``/lastBatches`` entries of the datasets with batches, filtered by the
        query: ``dataSetId`` (a comma-separated list) and any field's value."""
        query = request.query
        wanted = query["dataSetId"].split(",") if "dataSetId" in query else None
        objects = []
        for dataset_id in self.datasets:
            if wanted is not None and dataset_id not in wanted:
                continue
            obj = api.last_batches_json(
                index.of_dataset(dataset_id), self.org_id, self.sandbox
            )
            if obj is not None and all(
                str(obj.get(name)) == query[name]
                for name in _LAST_BATCH_FILTERS
                if name in query
            ):
                objects.append((dataset_id, obj))
        return objects

    def _batch_objects(
        self, index: _Index, query: Mapping[str, str]
    ) -> list[tuple[str, dict[str, Any]]]:
        return [(b.batch_id, self._batch_json(b)) for b in self._matching(index, query)]

    def _batch_json(self, batch: FakeBatch) -> dict[str, Any]:
        return api.batch_json(batch, self.org_id, self.sandbox)

    def _matching(self, index: _Index, query: Mapping[str, str]) -> Iterator[FakeBatch]:
        """The batches the query's filters keep, in the index's order; only those
        created within its bounds are looked at."""
        active = [
            (check, query[name])
            for name, check in _BATCH_FILTERS.items()
            if name in query
        ]
        first, last = 0, len(index.batches)
        try:
            if "createdAfter" in query:
                first = bisect.bisect_right(index.created, int(query["createdAfter"]))
            if "createdBefore" in query:
                last = bisect.bisect_left(index.created, int(query["createdBefore"]))
        except ValueError:
            first, last = 0, len(index.batches)  # the filters answer 400
        for batch in index.batches[first:last]:
            if all(check(batch, value) for check, value in active):
                yield batch

    def get(self, batch_id: str) -> FakeBatch:
        """The batch with that id (KeyError if none)."""
        return self._index.get(batch_id)

    def batches_of(self, dataset_id: Optional[str] = None) -> list[FakeBatch]:
        """Batches (of one dataset, or all) ordered by created time, then id."""
        return self._index.of_dataset(dataset_id)


def _batch(index: _Index, batch_id: str) -> FakeBatch:
    """The batch, or a 404 problem."""
    try:
        return index.get(batch_id)
    except KeyError:
        raise api.Problem(404, f"Batch {batch_id} not found") from None
