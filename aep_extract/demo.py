"""``aep-extract demo``: a real extraction from the built-in fake AEP platform.

Starts :class:`~aep_extract.testing.FakeAepPlatform` on 127.0.0.1, extracts its sample
dataset into ``DIR/data`` with a SQLite store at ``DIR/state.db``, then checks every
copied file against the platform's own content. A second run copies nothing new.
With ``--faults`` the platform injects faults (a
:class:`~aep_extract.testing.FaultPlan`) and the summary says how many it served.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Optional, Union

from .checkpoints import SQLiteCheckpointStore
from .config import RetryConfig
from .errors import ConfigError
from .extractor import Extractor
from .layout import KeyLayout
from .models import FileRef, TimeWindow, WorkUnit
from .schedulers import ThreadPoolScheduler
from .sinks import LocalSink
from .sources import HttpAepSource
from .testing import FakeAepPlatform, FaultPlan

logger = logging.getLogger(__name__)


FAULT_RETRY = RetryConfig(attempts=10, initial_wait=0.05, max_wait=1.0)
"""The demo's retry policy under injected faults: quick waits keep it short."""


def run_demo(
    directory: str,
    *,
    workers: int = 4,
    faults: Union[str, FaultPlan, None] = None,
) -> int:
    """Run the demo; returns the CLI exit code (0 when every file checks out).

    Args:
        directory: where the copied files (``data/``) and the state go.
        workers: files copied at once.
        faults: faults for the platform to inject: a
            :meth:`~aep_extract.testing.FaultPlan.parse` spec such as
            ``"429=0.1,reset=0.05"``, or a plan.

    Raises:
        ConfigError: ``faults`` is not a valid spec (nothing is started then).
    """
    plan = _fault_plan(faults)
    root = Path(directory)
    with FakeAepPlatform.generate(faults=plan) as platform:
        dataset_id = FakeAepPlatform.DEMO_DATASET_ID
        print(f"fake AEP platform at {platform.url}; dataset {dataset_id}")
        options: dict[str, Any] = {}
        if plan is not None:
            print(f"injecting faults: {_describe(plan)}")
            options["retry"] = FAULT_RETRY
        source = HttpAepSource.from_env(platform.env(), **options)
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
            if not path.is_file() or _sha256(path) != fake.sha256():
                mismatched += 1
                print(f"MISMATCH {key}")
        print(
            f"verified {len(expected) - mismatched} of {len(expected)} files "
            f"byte-identical to the platform under {root / 'data'}"
        )
        if plan is not None:
            counts = [f"{n} {kind}" for kind, n in platform.faults_served.items() if n]
            print(
                f"faults served: {', '.join(counts) or 'none'} "
                f"(in {len(platform.requests)} requests)"
            )
        source.close()
    return 0 if report.ok and not mismatched else 1


def _fault_plan(faults: Union[str, FaultPlan, None]) -> Optional[FaultPlan]:
    if faults is None or isinstance(faults, FaultPlan):
        return faults
    try:
        return FaultPlan.parse(faults)
    except ValueError as exc:
        raise ConfigError(f"--faults: {exc}") from None


def _describe(plan: FaultPlan) -> str:
    try:
        return plan.to_spec()
    except ValueError:  # a rule with a match pattern has no spec form
        return repr(plan)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
