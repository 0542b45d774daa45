"""The fake platform's data model: batches, their dataset files and physical files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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

    Raises:
        ValueError: an unknown status or duplicate failed-file names.
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
