"""The fake platform's data model: batches, their dataset files and physical files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional

import attrs

BATCH_STATUSES = frozenset(
    {
        "processing",
        "success",
        "failure",
        "queued",
        "retrying",
        "stalled",
        "aborted",
        "abandoned",
        "inactive",
        "failed",
        "loading",
        "loaded",
        "staged",
        "active",
        "staging",
        "deleted",
    }
)
"""The Catalog ``status`` enum of the OpenAPI spec."""


def check_status(status: str) -> None:
    """Raise ValueError unless ``status`` is in :data:`BATCH_STATUSES`."""
    if status not in BATCH_STATUSES:
        raise ValueError(f"unknown batch status {status!r}")


def _content_repr(content: bytes) -> str:
    return f"<{len(content)} bytes>"


def _non_empty(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string")


@attrs.frozen
class FakeFile:
    """One physical file: what ``GET /files/{id}?path={name}`` serves.

    Args:
        name: the file name (the ``path`` query value). Any non-empty text is
            accepted, also names a safe sink must reject (``../x``).
        content: the bytes.
    """

    name: str = attrs.field(validator=_non_empty)
    content: bytes = attrs.field(
        repr=_content_repr, validator=attrs.validators.instance_of(bytes)
    )

    @property
    def length(self) -> int:
        """Size in bytes."""
        return len(self.content)


def _to_files(items: Iterable[FakeFile]) -> tuple[FakeFile, ...]:
    return tuple(items)


def _to_children(items: Iterable[FakeDataSetFile]) -> tuple[FakeDataSetFile, ...]:
    return tuple(items)


def _to_batch_files(items: Iterable[FakeDataSetFile]) -> tuple[FakeDataSetFile, ...]:
    return tuple(items)


def _to_errors(items: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(dict(item) for item in items)


def _to_tags(value: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"tags must be a mapping, not {type(value).__name__}")
    tags: dict[str, tuple[str, ...]] = {}
    for key, values in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"tag names must be non-empty strings, not {key!r}")
        strings = isinstance(values, Sequence) and not isinstance(values, str)
        if not strings or not all(isinstance(item, str) for item in values):
            raise ValueError(f"tag {key!r} must be a sequence of strings")
        tags[key] = tuple(values)
    return tags


def _to_replay(value: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"replay must be a mapping, not {type(value).__name__}")
    try:  # a deep copy that also proves the value can be served as JSON
        copied: dict[str, Any] = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"replay must be JSON-serializable: {exc}") from None
    return copied


def _unique_names(files: Iterable[FakeFile], where: str) -> None:
    seen: set[str] = set()
    for file in files:
        if file.name in seen:
            raise ValueError(f"duplicate file name {file.name!r} in {where}")
        seen.add(file.name)


@attrs.frozen
class FakeDataSetFile:
    """A dataSetFileId of a batch: physical files (a leaf) or child ids (a directory).

    Args:
        dataset_file_id: the id, unique in the whole platform.
        files: physical files of a leaf; names unique within it.
        children: child dataset files; non-empty makes this a directory-type id
            (then ``files`` must be empty). Nesting may go to any depth.

    Raises:
        ValueError: both files and children, or duplicate names.
    """

    dataset_file_id: str = attrs.field(validator=_non_empty)
    files: tuple[FakeFile, ...] = attrs.field(default=(), converter=_to_files)
    children: tuple[FakeDataSetFile, ...] = attrs.field(
        default=(), converter=_to_children
    )

    def __attrs_post_init__(self) -> None:
        if self.files and self.children:
            raise ValueError(
                f"dataSetFileId {self.dataset_file_id!r} has both files and children"
            )
        _unique_names(self.files, self.dataset_file_id)

    @property
    def is_directory(self) -> bool:
        """Whether the id lists child ids rather than physical files."""
        return bool(self.children)

    def walk(self) -> Iterator[FakeDataSetFile]:
        """This dataset file and all its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def leaves(self) -> Iterator[FakeDataSetFile]:
        """The descendants (or self) that hold physical files, depth first."""
        return (node for node in self.walk() if not node.is_directory)

    @property
    def size(self) -> int:
        """Total bytes of every physical file below this id."""
        return sum(file.length for leaf in self.leaves() for file in leaf.files)


@attrs.frozen
class FakeBatch:
    """A Catalog batch of a dataset with its files.

    Args:
        batch_id: the batch id.
        dataset_id: the dataset it belongs to (``relatedObjects`` of type dataSet).
        status: a Catalog status (``success``, ``failed``, ``loading`` ...).
        created_ms: the ``created`` time in epoch milliseconds.
        dataset_files: top-level dataSetFileIds, served in this order by
            ``/batches/{id}/files``.
        failed_files: files served by ``/batches/{id}/failed``.
        errors: the batch's ``errors`` (``{code, description, rows}`` objects).
        tags: Catalog tags served on top of the generated ``flowId`` (a name given
            here wins), e.g. ``{"acp_successor": ["<id>"]}`` on a replaced batch.
        replay: the batch's ``replay`` object, served as given, e.g.
            ``{"predecessors": ["<id>"], "reason": "consolidation",
            "predecessorListingType": "IMMEDIATE"}``; None serves none.

    The batch is immutable: derive a changed one with ``attrs.evolve``. ``tags``
    and ``replay`` are copies of what was given; treat them as read-only.

    Raises:
        ValueError: an unknown status, duplicate failed-file names, a tag that is not
            a sequence of strings, or a ``replay`` that is not a JSON object.
    """

    batch_id: str = attrs.field(validator=_non_empty)
    dataset_id: str = attrs.field(validator=_non_empty)
    status: str = attrs.field(validator=attrs.validators.in_(BATCH_STATUSES))
    created_ms: int = attrs.field(validator=attrs.validators.instance_of(int))
    dataset_files: tuple[FakeDataSetFile, ...] = attrs.field(
        default=(), converter=_to_batch_files
    )
    failed_files: tuple[FakeFile, ...] = attrs.field(default=(), converter=_to_files)
    errors: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=_to_errors)
    tags: dict[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_to_tags, hash=False
    )
    replay: Optional[dict[str, Any]] = attrs.field(
        default=None, converter=_to_replay, hash=False
    )

    def __attrs_post_init__(self) -> None:
        _unique_names(self.failed_files, f"failed files of {self.batch_id}")

    def all_dataset_files(self) -> Iterator[FakeDataSetFile]:
        """Every dataSetFileId of the batch, directories and leaves, depth first."""
        for top in self.dataset_files:
            yield from top.walk()

    def leaf_files(self) -> list[tuple[str, FakeFile]]:
        """``(leaf dataSetFileId, file)`` pairs sorted by id, then file name."""
        pairs = [
            (leaf.dataset_file_id, file)
            for top in self.dataset_files
            for leaf in top.leaves()
            for file in leaf.files
        ]
        return sorted(pairs, key=lambda pair: (pair[0], pair[1].name))

    @property
    def size(self) -> int:
        """Total bytes of the batch's dataset files."""
        return sum(top.size for top in self.dataset_files)

    @property
    def file_count(self) -> int:
        """Number of physical files of the batch's dataset files."""
        return len(self.leaf_files())
