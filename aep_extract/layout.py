"""Deterministic sink keys for files and manifests; API names are sanitized."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any, Callable, Optional

import attrs

from .config import DEFAULT_KEY_TEMPLATE, DEFAULT_MANIFEST_TEMPLATE
from .errors import ConfigError, KeyCollisionError, UnsafeKeyError
from .models import WHOLE_BATCH, FileRef, WorkUnit, from_epoch_ms

_OFFSET_RANGE = re.compile(r"\.([0-9]+)-([0-9]+|\*)")
"""An offset range as a split unit's manifest key spells it (``.0-99``)."""


def check_key(key: str) -> str:
    """Return ``key`` if it stays inside its prefix, else raise UnsafeKeyError.

    A safe key is relative, '/'-separated, with no empty, ``.`` or ``..`` segment, no
    backslash and no control character.
    """
    if not key or key.startswith("/"):
        raise UnsafeKeyError(f"unsafe key {key!r}: empty or absolute")
    if "\\" in key or any(unicodedata.category(ch) == "Cc" for ch in key):
        raise UnsafeKeyError(f"unsafe key {key!r}: backslash or control character")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise UnsafeKeyError(f"unsafe key {key!r}: empty, '.' or '..' segment")
    return key


MANIFEST_FIELDS = ("dataset_id", "date", "batch_id")
"""The placeholders of a manifest template."""
FILE_FIELDS = (*MANIFEST_FIELDS, "dataset_file_id", "name")
"""The placeholders of a file template."""


def check_template(template: Any, *, manifest: bool = False) -> str:
    """Return ``template`` if it makes safe keys that tell files apart.

    A template uses only the placeholders ``dataset_id``, ``date``, ``batch_id``,
    ``dataset_file_id`` and ``name`` (a manifest template the first three), by
    plain name, as ``str.format`` fields (``{{`` and ``}}`` for literal braces).
    A file template holds ``{name}`` and ``{batch_id}`` or ``{dataset_file_id}``,
    a manifest template ``{batch_id}``: without them the files or manifests of
    different batches would share keys. Its fixed text must keep keys relative
    and inside their prefix (no absolute path, no empty, ``.`` or ``..``
    segment, no backslash).

    Raises:
        ConfigError: the template breaks one of these rules.
    """
    kind = "manifest template" if manifest else "key template"
    if not isinstance(template, str):
        raise ConfigError(f"{kind} must be a string, not {type(template).__name__}")
    fields = MANIFEST_FIELDS if manifest else FILE_FIELDS
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone brace
        raise ConfigError(f"{kind} {template!r}: {exc}") from None
    used = {field for _, field, _, _ in parsed if field is not None}
    for field in sorted(used - set(fields)):
        allowed = ", ".join(f"{{{name}}}" for name in fields)
        raise ConfigError(
            f"{kind} {template!r}: unknown placeholder {{{field}}}; use {allowed}"
        )
    required = (
        [["batch_id"]] if manifest else [["name"], ["batch_id", "dataset_file_id"]]
    )
    for choices in required:
        if not used.intersection(choices):
            spelled = " or ".join(f"{{{name}}}" for name in choices)
            what = "batches" if manifest else "files"
            raise ConfigError(
                f"{kind} {template!r} has no {spelled}: keys of different {what} "
                "would collide"
            )
    try:  # a format spec that does not apply, or fixed text that escapes
        check_key(template.format(**dict.fromkeys(fields, "x")))
    except (ValueError, UnsafeKeyError) as exc:
        raise ConfigError(f"{kind} {template!r}: {exc}") from None
    return template


def _template(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_template(value, manifest=attribute.name == "manifest_template")


def describe_file(file: FileRef) -> str:
    """A file's source ids, quoted so that no two files read alike (``a/b`` + ``c``
    and ``a`` + ``b/c`` would, as paths)."""
    return f"dataSetFileId {file.dataset_file_id!r} name {file.name!r}"


@attrs.frozen(kw_only=True)
class KeyLayout:
    """Turns units and files into sink keys with ``str.format`` templates.

    Fields: ``dataset_id``, ``date`` (the batch's created day, UTC, YYYY-MM-DD),
    ``batch_id``, and for files ``dataset_file_id`` and ``name``.

    Raises:
        ConfigError: a template breaks the rules of
            :func:`~aep_extract.layout.check_template`.
    """

    file_template: str = attrs.field(default=DEFAULT_KEY_TEMPLATE, validator=_template)
    manifest_template: str = attrs.field(
        default=DEFAULT_MANIFEST_TEMPLATE, validator=_template
    )

    def file_key(self, unit: WorkUnit, file: FileRef) -> str:
        """Key of one copied file.

        Raises:
            UnsafeKeyError: a name from the API would escape the batch's prefix.
        """
        for value in (file.dataset_file_id, file.name):
            check_key(value)
        return check_key(
            self.file_template.format(
                **self._fields(unit),
                dataset_file_id=file.dataset_file_id,
                name=file.name,
            )
        )

    def file_keys(
        self,
        unit: WorkUnit,
        files: Sequence[FileRef],
        identity: Callable[[str], str] = str,
        outputs: Optional[Callable[[str], Sequence[str]]] = None,
    ) -> list[str]:
        """Keys of every file of a batch, in listing order, each naming its own object.

        ``files`` is the whole listing of ``unit``'s batch: the units of a split batch
        share its keys. Two keys name one object when ``identity`` (the sink's
        :meth:`~aep_extract.Sink.key_identity`) maps them to the same value. With
        ``outputs`` (a transform's :func:`~aep_extract.transforms.output_keys`), the
        objects are the keys it derives from each file's key, and those must not
        collide.

        Raises:
            UnsafeKeyError: a name from the API would escape the batch's prefix, or
                the sink refuses a key.
            KeyCollisionError: two files map to one object, or a file to the
                manifest of a unit of the batch.
        """
        keys = [self.file_key(unit, file) for file in files]
        owners: dict[str, tuple[str, str]] = {}  # identity -> (source, key)

        def claim(source: str, key: str) -> None:
            first = owners.setdefault(identity(key), (source, key))
            if first != (source, key):
                raise KeyCollisionError((first[0], source), (first[1], key))

        def claim_manifest(of: WorkUnit) -> None:
            claim(f"the manifest of unit {of.unit_id}", self.manifest_key(of))

        claim_manifest(attrs.evolve(unit, first_offset=0, last_offset=None))
        for file, key in zip(files, keys):
            for stored in [key] if outputs is None else outputs(key):
                # A split unit's manifest spells its range in its key
                # (_manifest.0-99.json): a key holding a range may be the manifest
                # of a unit of the batch.
                for first, last in _OFFSET_RANGE.findall(stored):
                    end = None if last == "*" else int(last)
                    split = attrs.evolve(unit, first_offset=int(first), last_offset=end)
                    if identity(self.manifest_key(split)) == identity(stored):
                        claim_manifest(split)
                claim(describe_file(file), stored)
        return keys

    def manifest_key(self, unit: WorkUnit) -> str:
        """Key of a batch's manifest (one per unit for a split batch)."""
        key = self.manifest_template.format(**self._fields(unit))
        if unit.offset_range != WHOLE_BATCH:
            # A split batch gets one manifest per offset range, beside each other.
            stem, dot, ext = key.rpartition(".")
            key = (
                f"{stem}.{unit.offset_range}.{ext}"
                if dot
                else f"{key}.{unit.offset_range}"
            )
        return check_key(key)

    def dataset_prefix(self, dataset_id: str) -> Optional[str]:
        """The fixed start of every key of a dataset, up to its last ``/``.

        None when the file template does not start with the dataset id (then no
        prefix holds one dataset's keys alone).
        """
        head = self.file_template.partition("{dataset_id}")
        if not head[1] or "{" in head[0]:
            return None
        static = (head[0] + dataset_id + head[2]).partition("{")[0]
        prefix = static.rpartition("/")[0]
        return f"{prefix}/" if prefix else None

    @staticmethod
    def _fields(unit: WorkUnit) -> dict[str, str]:
        for value in (unit.dataset_id, unit.batch_id):
            if "/" in check_key(value):
                raise UnsafeKeyError(f"unsafe id {value!r}: contains '/'")
        return {
            "dataset_id": unit.dataset_id,
            "batch_id": unit.batch_id,
            "date": batch_date(unit.batch_created_ms),
        }


def batch_date(created_ms: int) -> str:
    """The ``{date}`` of a key: a batch's created day, UTC, as ``YYYY-MM-DD``."""
    return from_epoch_ms(created_ms).strftime("%Y-%m-%d")
