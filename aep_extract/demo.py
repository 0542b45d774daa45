"""``aep-extract demo``: a real extraction from the built-in fake AEP platform.

Starts :class:`~aep_extract.testing.FakeAepPlatform` on 127.0.0.1, extracts its sample
dataset into ``DIR/data`` with a SQLite store at ``DIR/state.db``, then checks every
copied file against the platform's own content. A second run copies nothing new.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .checkpoints import SQLiteCheckpointStore
from .extractor import Extractor
from .layout import KeyLayout
from .models import FileRef, TimeWindow, WorkUnit
from .schedulers import ThreadPoolScheduler
from .sinks import LocalSink
from .sources import HttpAepSource
from .testing import FakeAepPlatform

logger = logging.getLogger(__name__)


def run_demo(directory: str, *, workers: int = 4) -> int:
    """Run the demo; returns the CLI exit code (0 when every file checks out)."""
    root = Path(directory)
    with FakeAepPlatform.generate() as platform:
        dataset_id = FakeAepPlatform.DEMO_DATASET_ID
        print(f"fake AEP platform at {platform.url}; dataset {dataset_id}")
        source = HttpAepSource.from_env(platform.env())
        sink = LocalSink(root / "data")
        with Extractor(
            source,
            store=SQLiteCheckpointStore(root / "state.db"),
            sink=sink,
            scheduler=ThreadPoolScheduler(workers),
        ) as extractor:
            report = extractor.run(
                dataset_id, FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END
            )
        print(report)
        window = TimeWindow.parse(FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END)
        expected = platform.expected_files(dataset_id, window.start_ms, window.end_ms)
        layout = KeyLayout()
        mismatched = 0
        for batch, file_id, fake in expected:
            unit = WorkUnit(
                dataset_id=dataset_id,
                batch_id=batch.batch_id,
                batch_created_ms=batch.created_ms,
            )
            ref = FileRef(
                dataset_file_id=file_id, name=fake.name, length=len(fake.content)
            )
            key = layout.file_key(unit, ref)
            path = root / "data" / key
            if (
                not path.is_file()
                or _sha256(path) != hashlib.sha256(fake.content).hexdigest()
            ):
                mismatched += 1
                print(f"MISMATCH {key}")
        print(
            f"verified {len(expected) - mismatched} of {len(expected)} files "
            f"byte-identical to the platform under {root / 'data'}"
        )
        source.close()
    return 0 if report.ok and not mismatched else 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
