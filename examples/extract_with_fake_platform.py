"""Extract a dataset end to end from the fake AEP platform that ships with the library.

Starts :class:`aep_extract.testing.FakeAepPlatform` on 127.0.0.1, copies its sample
dataset into a temporary directory with a SQLite checkpoint store, prints the report
and the state of every unit, then runs again to show that a rerun copies nothing.
Exits 0 only if every unit is Completed.

Against real AEP, build the source with ``HttpAepSource.from_env()`` (it reads the
``AEP_*`` variables of the environment) and keep the rest.

Run: ``python examples/extract_with_fake_platform.py``
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aep_extract import (
    Extractor,
    HttpAepSource,
    LocalSink,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
)
from aep_extract.testing import FakeAepPlatform

DATASET = FakeAepPlatform.DEMO_DATASET_ID
START, END = FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END


def extract(env: Mapping[str, str], root: Path) -> bool:
    """Copy the window into ``root/data``, keep state in ``root/state.db``."""
    source = HttpAepSource.from_env(env)
    store = SQLiteCheckpointStore(root / "state.db")
    with source, store, ThreadPoolScheduler(max_workers=4) as scheduler:
        extractor = Extractor(
            source, store=store, sink=LocalSink(root / "data"), scheduler=scheduler
        )
        report = extractor.run(DATASET, START, END)
        print(report)
        for unit in extractor.status(DATASET).units:
            print(
                f"{unit.unit_id}  {unit.status.value:<10}  "
                f"offset {unit.last_processed_offset:>2}  {unit.files_done} files"
            )
        # Same command again: every unit is Completed, so nothing is copied twice.
        again = extractor.run(DATASET, START, END)
        print(f"rerun copied {again.files_copied} files")
        return report.ok and again.ok and again.files_copied == 0


def main() -> int:
    with FakeAepPlatform.generate() as platform, tempfile.TemporaryDirectory() as tmp:
        return 0 if extract(platform.env(), Path(tmp)) else 1


if __name__ == "__main__":
    sys.exit(main())
