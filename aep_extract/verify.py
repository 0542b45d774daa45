"""Reconcile a dataset's copy: the sink's objects and manifests against the store's
units and the Catalog's batches.

:func:`verify` reads only; it never changes the sink or the store. Run it when no run
of the dataset is in progress: objects a run is writing have no manifest yet and are
reported as stray.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections import Counter
from typing import Any, Callable, Optional

import attrs

from .checkpoints.base import CheckpointStore
from .errors import AepExtractError, SinkError
from .layout import KeyLayout, batch_date
from .models import (
    EXPORTABLE_BATCH_STATUSES,
    Batch,
    Checkpoint,
    TimeWindow,
    UnitStatus,
    WorkUnit,
    manifest_objects,
)
from .sinks.base import Sink
from .sources.base import AepSource
from .tables.base import PARTITION_KEY, TableCatalog
from .tables.partitions import partition_root

logger = logging.getLogger(__name__)

__all__ = ["Finding", "FindingKind", "VerifyReport", "verify"]

_HELD = (UnitStatus.SKIPPED, UnitStatus.WAITING)
"""Statuses of units with nothing in the sink to check."""


class FindingKind(str, enum.Enum):
    """What kind of discrepancy a :class:`Finding` is."""

    MISSING_MANIFEST = "missing-manifest"
    """An exportable batch (or unit of it) in the window has no manifest."""
    COMPLETED_WITHOUT_MANIFEST = "completed-without-manifest"
    """The store says Completed, but the unit's manifest is not in the sink."""
    MANIFEST_WITHOUT_COMPLETED_UNIT = "manifest-without-completed-unit"
    """A manifest is in the sink, but its unit is absent or not Completed."""
    UNIT_NOT_IN_CATALOG = "unit-not-in-catalog"
    """A unit in the window whose batch the Catalog no longer lists as exportable."""
    UNREADABLE_MANIFEST = "unreadable-manifest"
    """A manifest that is not the JSON the extractor writes."""
    MISSING_OBJECT = "missing-object"
    """A manifest names an object that is not in the sink."""
    SIZE_MISMATCH = "size-mismatch"
    """An object's size differs from its manifest entry."""
    CHECKSUM_MISMATCH = "checksum-mismatch"
    """An object's SHA-256 differs from its manifest entry."""
    STRAY_OBJECT = "stray-object"
    """An object under the dataset's prefix that no manifest names."""
    PARTITION_MISSING = "partition-missing"
    """A day with Completed units in the window has no partition in the table
    (checked when :func:`verify` is given one)."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen(kw_only=True)
class Finding:
    """One discrepancy.

    Attributes:
        kind: what is wrong.
        key: the sink key concerned (object or manifest), or "" when none.
        unit: the unit id concerned, or "" when none.
        detail: a readable explanation.
    """

    kind: FindingKind
    key: str = ""
    unit: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        """A JSON-serialisable form."""
        return {
            "kind": self.kind.value,
            "key": self.key,
            "unit": self.unit,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        where = " ".join(part for part in (self.unit, self.key) if part)
        return f"{self.kind.value}: {where}: {self.detail}"


@attrs.frozen(kw_only=True)
class VerifyReport:
    """Outcome of :func:`verify` and :meth:`Extractor.verify
    <aep_extract.Extractor.verify>`.

    Attributes:
        dataset_id: the dataset verified.
        window: the window on batch ``created`` time.
        checksums: whether objects were read back and their SHA-256 compared.
        batches: exportable batches the Catalog lists in the window.
        manifests: manifests read.
        objects: objects checked against their manifest entries.
        bytes_read: bytes read back to compute checksums.
        catalog_checked: whether the Catalog was read (False: the store's units
            stood for the window's batches).
        stray_checked: whether the dataset's prefix was listed for stray objects
            (not possible when the key template does not start with the dataset id,
            or the sink cannot list keys).
        partitions_checked: whether a table's partitions were checked.
        findings: every discrepancy found.
    """

    dataset_id: str
    window: TimeWindow
    checksums: bool
    batches: int = 0
    manifests: int = 0
    objects: int = 0
    bytes_read: int = 0
    stray_checked: bool = False
    catalog_checked: bool = True
    partitions_checked: bool = False
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        """No discrepancy was found."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "datasetId": self.dataset_id,
            "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(),
            "ok": self.ok,
            "checksums": self.checksums,
            "batches": self.batches,
            "manifests": self.manifests,
            "objects": self.objects,
            "bytesRead": self.bytes_read,
            "strayChecked": self.stray_checked,
            "catalogChecked": self.catalog_checked,
            "partitionsChecked": self.partitions_checked,
            "findings": [finding.to_dict() for finding in self.findings],
        }

    def __str__(self) -> str:
        checked = "sizes and SHA-256" if self.checksums else "sizes only"
        lines = [
            f"verified {self.dataset_id} {self.window}: {self.batches} batches, "
            f"{self.manifests} manifests, {self.objects} objects ({checked}"
            + ("" if self.stray_checked else "; stray objects not checked")
            + ("" if self.catalog_checked else "; Catalog not read")
            + ("; table partitions" if self.partitions_checked else "")
            + ")",
        ]
        if self.ok:
            agree = (
                "sink, store and Catalog" if self.catalog_checked else "sink and store"
            )
            lines.append(f"OK: {agree} agree")
        else:
            lines.append(f"{len(self.findings)} discrepancy(ies):")
            lines += [f"  {finding}" for finding in self.findings]
        return "\n".join(lines)


def verify(
    *,
    source: Optional[AepSource],
    store: CheckpointStore,
    sink: Sink,
    dataset_id: str,
    window: TimeWindow,
    layout: Optional[KeyLayout] = None,
    checksums: bool = True,
    table: Optional[TableCatalog] = None,
) -> VerifyReport:
    """Reconcile the sink, the store and the Catalog for a dataset's window.

    Args:
        source: the Catalog to list the window's batches from; None checks the
            sink against the store's units alone (no AEP credentials needed).
        store: the checkpoint store of the runs.
        sink: where the runs copied to.
        dataset_id: the dataset.
        window: the window on batch ``created`` time.
        layout: the key layout the runs used (default: the default layout).
        checksums: read every object back and compare its SHA-256 with the
            manifest (streams every byte; for S3 that is a GET per object). False
            compares sizes only.
        table: a table over the dataset (e.g. a
            :class:`~aep_extract.tables.glue.GlueCatalog`): every day with a
            Completed unit in the window must have its ``date=`` partition.

    Returns:
        The report; :attr:`VerifyReport.ok` is False when anything disagrees.

    Raises:
        SourceError: the Catalog could not be read.
        CheckpointError: the store could not be read.
        SinkError: the sink could not be read.
        CatalogError: the table's partitions could not be read.
        ConfigError: a table is given but the key template has no
            ``date={date}/`` segment.
    """
    layout = layout or KeyLayout()
    if table is not None:
        partition_root(layout, dataset_id)  # fail before reading anything
    return _Verifier(source, store, sink, layout, checksums, table).run(
        dataset_id, window
    )


class _Verifier:
    def __init__(
        self,
        source: Optional[AepSource],
        store: CheckpointStore,
        sink: Sink,
        layout: KeyLayout,
        checksums: bool,
        table: Optional[TableCatalog] = None,
    ) -> None:
        self.source = source
        self.table = table
        self.store = store
        self.sink = sink
        self.layout = layout
        self.checksums = checksums
        self.findings: list[Finding] = []
        self.named: set[str] = set()
        self.manifests = 0
        self.objects = 0
        self.bytes_read = 0

    def note(self, kind: FindingKind, key: str, unit: str, detail: str) -> None:
        self.findings.append(Finding(kind=kind, key=key, unit=unit, detail=detail))

    def run(self, dataset_id: str, window: TimeWindow) -> VerifyReport:
        units: dict[str, list[Checkpoint]] = {}
        for cp in self.store.list(dataset_id):
            if window.contains_ms(cp.unit.batch_created_ms):
                units.setdefault(cp.unit.batch_id, []).append(cp)
        if self.source is None:
            batches = [
                Batch(
                    batch_id=batch_id,
                    dataset_id=dataset_id,
                    status="success",
                    created_ms=cps[0].unit.batch_created_ms,
                )
                for batch_id, cps in sorted(units.items())
            ]
        else:
            batches = [
                b
                for b in self.source.list_batches(dataset_id, window)
                if b.status in EXPORTABLE_BATCH_STATUSES
            ]
        # Batches a plan chose not to copy (Skipped) or not to copy yet
        # (Waiting on AEP) have no objects to check; a superseded batch never
        # planned would be Skipped too.
        held = {
            batch_id
            for batch_id, cps in units.items()
            if all(cp.status in _HELD for cp in cps)
        }
        units = {k: v for k, v in units.items() if k not in held}
        batches = [
            b
            for b in batches
            if b.batch_id not in held and (b.batch_id in units or not b.successors)
        ]
        exportable = {b.batch_id for b in batches}
        checked: set[str] = set()
        for batch in batches:
            known = units.get(batch.batch_id)
            if not known:  # never planned: the whole-batch manifest is expected
                checked.add(self._check_unit(_whole(batch), None))
            for cp in known or ():
                checked.add(self._check_unit(cp.unit, cp))
        for batch_id, cps in sorted(units.items()):
            if batch_id in exportable:
                continue
            for cp in cps:
                self.note(
                    FindingKind.UNIT_NOT_IN_CATALOG,
                    "",
                    cp.unit_id,
                    f"{cp.status.value} in the store, but the Catalog lists no "
                    "exportable batch with this id in the window",
                )
                checked.add(self._check_unit(cp.unit, cp))
        stray_checked = self._check_stray(dataset_id, window, checked)
        if self.table is not None:
            self._check_partitions(self.table, dataset_id, units)
        report = VerifyReport(
            dataset_id=dataset_id,
            window=window,
            checksums=self.checksums,
            batches=len(batches),
            manifests=self.manifests,
            objects=self.objects,
            bytes_read=self.bytes_read,
            stray_checked=stray_checked,
            catalog_checked=self.source is not None,
            partitions_checked=self.table is not None,
            findings=tuple(self.findings),
        )
        logger.info("verified %s: %d finding(s)", dataset_id, len(report.findings))
        return report

    def _check_unit(self, unit: WorkUnit, cp: Optional[Checkpoint]) -> str:
        """Check one unit's manifest and objects; returns the manifest key."""
        key = self.layout.manifest_key(unit)
        completed = cp is not None and cp.status is UnitStatus.COMPLETED
        if self.sink.stat(key) is None:
            if completed:
                self.note(
                    FindingKind.COMPLETED_WITHOUT_MANIFEST,
                    key,
                    unit.unit_id,
                    "the store says Completed but the manifest is missing",
                )
            else:
                state = "not planned" if cp is None else cp.status.value
                self.note(
                    FindingKind.MISSING_MANIFEST,
                    key,
                    unit.unit_id,
                    f"batch not in the sink (unit {state})",
                )
            return key
        if not completed:
            state = "absent from the store" if cp is None else cp.status.value
            self.note(
                FindingKind.MANIFEST_WITHOUT_COMPLETED_UNIT,
                key,
                unit.unit_id,
                f"manifest present but the unit is {state}",
            )
        self._check_manifest(key, unit.unit_id)
        return key

    def _check_manifest(self, key: str, unit_id: str) -> None:
        self.named.add(key)
        self.manifests += 1
        try:
            entries = manifest_objects(json.loads(self.sink.read_bytes(key)))
        except (ValueError, KeyError, TypeError) as exc:
            self.note(FindingKind.UNREADABLE_MANIFEST, key, unit_id, str(exc))
            return
        for entry in entries:
            self.named.add(entry.key)
            self._check_object(entry.key, unit_id, entry.size, entry.sha256)

    def _check_object(self, key: str, unit_id: str, size: int, sha256: str) -> None:
        self.objects += 1
        try:
            info = self.sink.stat(key)
        except SinkError as exc:
            self.note(FindingKind.MISSING_OBJECT, key, unit_id, str(exc))
            return
        if info is None:
            self.note(FindingKind.MISSING_OBJECT, key, unit_id, "named by the manifest")
            return
        if info.size != size:
            self.note(
                FindingKind.SIZE_MISMATCH,
                key,
                unit_id,
                f"{info.size} bytes, manifest says {size}",
            )
            return
        if self.checksums:
            actual = self.sink.sha256(key)
            self.bytes_read += info.size
            if actual != sha256:
                self.note(
                    FindingKind.CHECKSUM_MISMATCH,
                    key,
                    unit_id,
                    f"sha256 {actual[:16]}..., manifest says {sha256[:16]}...",
                )

    def _check_partitions(
        self,
        table: TableCatalog,
        dataset_id: str,
        units: dict[str, list[Checkpoint]],
    ) -> None:
        """Every day with a Completed unit has its partition in the table."""
        days = Counter(
            batch_date(cp.unit.batch_created_ms)
            for cps in units.values()
            for cp in cps
            if cp.status is UnitStatus.COMPLETED
        )
        root = partition_root(self.layout, dataset_id)
        for day in table.missing_partitions(days):
            self.note(
                FindingKind.PARTITION_MISSING,
                f"{root}{PARTITION_KEY}={day}/",
                "",
                f"{days[day]} Completed unit(s) of this day, but table "
                f"{table} has no partition {PARTITION_KEY}={day}",
            )

    def _check_stray(
        self, dataset_id: str, window: TimeWindow, checked: set[str]
    ) -> bool:
        """List the dataset's prefix: manifests outside the window name their
        objects too; whatever no manifest names is stray."""
        prefix = self.layout.dataset_prefix(dataset_id)
        if prefix is None:
            return False
        try:
            keys = list(self.sink.list_keys(prefix))
        except NotImplementedError:
            return False
        is_manifest = _manifest_matcher(self.layout)
        for key in keys:
            if key in checked or not is_manifest(key):
                continue
            # A manifest of another window, or of a unit the store and Catalog do
            # not know: it names its objects; inside the window it is a finding.
            self.named.add(key)
            try:
                data = json.loads(self.sink.read_bytes(key))
                created = int(data["batchCreated"])
                unit_id = str(data["batchId"])
                entries = manifest_objects(data)
            except (ValueError, KeyError, TypeError, AepExtractError) as exc:
                self.note(FindingKind.UNREADABLE_MANIFEST, key, "", str(exc))
                continue
            self.named.update(entry.key for entry in entries)
            if window.contains_ms(created):
                self.manifests += 1
                self.note(
                    FindingKind.MANIFEST_WITHOUT_COMPLETED_UNIT,
                    key,
                    unit_id,
                    "manifest of a unit neither the store nor the Catalog has",
                )
        for key in keys:
            if key not in self.named:
                self.note(
                    FindingKind.STRAY_OBJECT,
                    key,
                    "",
                    "under the dataset's prefix but named by no manifest",
                )
        return True


def _whole(batch: Batch) -> WorkUnit:
    return WorkUnit(
        dataset_id=batch.dataset_id,
        batch_id=batch.batch_id,
        batch_created_ms=batch.created_ms,
    )


def _manifest_matcher(layout: KeyLayout) -> Callable[[str], object]:
    """A predicate telling manifest keys (also of split units) from data keys."""
    name = layout.manifest_template.rpartition("/")[2]
    if "{" in name:
        return lambda _key: False
    stem, dot, ext = name.rpartition(".")
    if dot:
        pattern = re.compile(
            rf"(^|/){re.escape(stem)}(\.\d+-(\d+|\*))?\.{re.escape(ext)}$"
        )
    else:
        pattern = re.compile(rf"(^|/){re.escape(name)}(\.\d+-(\d+|\*))?$")
    return pattern.search
