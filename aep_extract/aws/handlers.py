"""The Lambda handlers of the state machine's steps: :func:`plan`, :func:`status`
and :func:`verify`.

Their settings come from the environment the template sets (``AEP_EXTRACT_STORE``,
``AEP_EXTRACT_SINK``, ``AEP_EXTRACT_SHARDS``, ``AEP_SECRET_ID`` ...; see the AWS
page of the docs). Each returns a small JSON object whatever the number of batches:
the shard list goes to S3, where the Map reads it. Errors reach Step Functions by
class name: :class:`Misconfigured` (never retried), :class:`Retryable` and
:class:`VerificationFailed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from .._entry import CONFIG_ERRORS
from ..checkpoints import CheckpointStore, open_store
from ..errors import AepExtractError, ConfigError, NothingNewToPlan
from ..extractor import Extractor
from ..models import TimeWindow, UnitStatus, to_moment
from ..report import DatasetStatus
from ._settings import Settings

__all__ = [
    "Misconfigured",
    "Retryable",
    "StepError",
    "VerificationFailed",
    "plan",
    "status",
    "verify",
]

logger = logging.getLogger(__name__)

Event = Mapping[str, Any]

_EXECUTION = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


class StepError(AepExtractError):
    """An error of a step, as Step Functions sees it (by class name)."""


class Misconfigured(StepError):
    """The settings, the event, the credentials or a resource are wrong (a
    :class:`~aep_extract.ConfigError`, :class:`~aep_extract.AuthError` or
    :class:`~aep_extract.NotFoundError`): a retry cannot pass."""


class Retryable(StepError):
    """Any other failure of the library (throttling, 5xx, a lost store write)."""


class VerificationFailed(StepError):
    """Verify found discrepancies or unfinished units; one line per dataset."""


def plan(event: Optional[Event], context: Any = None) -> dict[str, Any]:
    """Plan every dataset's window once and write the shard list to S3.

    Event (every key optional): ``datasets`` (default ``AEP_EXTRACT_DATASETS``),
    ``start`` and ``end`` (ISO 8601), ``since_last`` (the default without both
    ``start`` and ``end``: each dataset's window continues its last one, up to
    ``end`` or now less ``AEP_EXTRACT_LAG``; ``start``, else
    ``AEP_EXTRACT_FIRST_START``, serves a dataset's first run), ``execution`` (the
    shard file's name; default the Lambda request id).

    Every dataset is checked (it exists, the sink and store are usable and the
    store's destination matches) before any is planned. A since-last dataset with
    nothing new to plan is left out of the windows. Each dataset gets
    ``min(workers per dataset, its units Pending or InProgress)`` shards, so the
    units an earlier run left unfinished are copied whatever is planned; each
    shard a rate of ``AEP_EXTRACT_REQUESTS_PER_SECOND`` divided by the shards that
    run at once.

    Returns:
        ``shards`` (``{"Bucket", "Key"}`` of the shard file), ``shard_count``,
        ``windows`` (``[{"dataset", "start", "end"}]``, the planned ones) and
        ``planned`` (``[{"dataset", "units": {status: count}}]``). The shard
        file is a JSON array of items ``{"dataset", "worker", "shard",
        "threads", "requests_per_second"}``, all values text.

    Raises:
        Misconfigured: see the class.
        Retryable: see the class.
    """
    with _step_errors():
        return _plan(event or {}, context)


def status(event: Optional[Event], context: Any = None) -> dict[str, Any]:
    """The units of the plan's windows (``event["windows"]``), from the store.

    Returns:
        ``ok`` and ``datasets``, one per window: ``dataset``, ``start``,
        ``end``, ``ok`` (none of its units is Pending, InProgress or Failed),
        ``units`` (``{status: count}``), ``files_done``, ``bytes_done`` and
        ``errors`` (``[{"unit", "error"}]``, the newest five at most).

    Raises:
        Misconfigured: see the class.
        Retryable: see the class.
    """
    with _step_errors():
        windows = _windows(event or {})
        settings = Settings.from_env()
        with open_store(settings.store, read_only=True) as store:
            datasets = [_status(store, dataset, w) for dataset, w in windows]
    return {"ok": all(d["ok"] for d in datasets), "datasets": datasets}


def verify(event: Optional[Event], context: Any = None) -> dict[str, Any]:
    """Verify each of the plan's windows (``event["windows"]``): the Catalog, the
    store and the sink agree, comparing sizes (not checksums, which would read
    every object back).

    Returns:
        ``ok`` (true) and ``datasets``, one per window: ``dataset``, ``start``,
        ``end``, ``ok``, ``batches``, ``manifests``, ``objects`` and
        ``findings`` (how many).

    Raises:
        VerificationFailed: a discrepancy, or a unit not Completed; a line per
            dataset.
        Misconfigured: see the class.
        Retryable: see the class.
    """
    with _step_errors():
        windows = _windows(event or {})
        with Settings.from_env().extractor() as extractor:
            reports = [
                extractor.verify(dataset, w.start, w.end, checksums=False)
                for dataset, w in windows
            ]
    bad = [
        f"{r.dataset_id} {r.window}: {len(r.findings)} discrepancy(ies), first: "
        f"{r.findings[0]}"
        for r in reports
        if not r.ok
    ]
    if bad:
        raise VerificationFailed("\n".join(bad))
    datasets = [
        {
            "dataset": r.dataset_id,
            "start": r.window.start.isoformat(),
            "end": r.window.end.isoformat(),
            "ok": r.ok,
            "batches": r.batches,
            "manifests": r.manifests,
            "objects": r.objects,
            "findings": len(r.findings),
        }
        for r in reports
    ]
    return {"ok": True, "datasets": datasets}


@contextlib.contextmanager
def _step_errors() -> Iterator[None]:
    try:
        yield
    except StepError:
        raise
    except CONFIG_ERRORS as exc:
        raise Misconfigured(str(exc)) from exc
    except AepExtractError as exc:
        raise Retryable(str(exc)) from exc


def _plan(event: Event, context: Any) -> dict[str, Any]:
    settings = Settings.from_env()
    execution = str(event.get("execution") or getattr(context, "aws_request_id", ""))
    if not _EXECUTION.fullmatch(execution):
        raise ConfigError("the event's execution must be a Step Functions name")
    from ..sinks.s3 import S3Sink

    shards_url = settings.get("AEP_EXTRACT_SHARDS")
    S3Sink.check_url(shards_url)
    datasets = _datasets(event, settings.env)
    with settings.extractor() as extractor, S3Sink(shards_url) as shards:
        shards.check()
        for dataset in datasets:
            extractor.source.get_dataset(dataset)
            extractor.preflight(dataset)
        windows = _plan_windows(extractor, datasets, event, settings)
        store = extractor.store
        active = [  # a dataset left out still finishes what earlier runs left
            (dataset, min(settings.workers_per_dataset, _active(store, dataset)))
            for dataset in datasets
        ]
        planned = [
            {
                "dataset": dataset,
                "units": _counts(DatasetStatus.from_store(store, dataset, w)),
            }
            for dataset, w in windows
        ]
        items = _shards(settings, active)
        key = f"{execution}.json"
        shards.write_bytes(key, json.dumps(items).encode())
    return {
        "shards": {
            "Bucket": shards.bucket,
            "Key": f"{shards.prefix}/{key}" if shards.prefix else key,
        },
        "shard_count": len(items),
        "windows": [
            {"dataset": d, "start": w.start.isoformat(), "end": w.end.isoformat()}
            for d, w in windows
        ],
        "planned": planned,
    }


def _plan_windows(
    extractor: Extractor, datasets: list[str], event: Event, settings: Settings
) -> list[tuple[str, TimeWindow]]:
    """Plan each dataset's window (the event's, or since its last one); the
    windows planned. A since-last dataset with nothing new is left out."""
    start, end = _moment(event, "start"), _moment(event, "end")
    fixed: Optional[TimeWindow] = None
    if not event.get("since_last", start is None or end is None):
        if start is None or end is None:
            raise ConfigError("give start and end, or since_last")
        fixed = TimeWindow(start, end)
    first_start = start or _moment(settings.env, "AEP_EXTRACT_FIRST_START")
    until = end or datetime.now(timezone.utc) - timedelta(seconds=settings.lag)
    windows = []
    for dataset in datasets:
        try:
            window = fixed or extractor.next_window(
                dataset, start=first_start, end=until
            )
        except NothingNewToPlan as exc:
            logger.info("%s; left out", exc)
            continue
        logger.info("%s", extractor.plan(dataset, window.start, window.end))
        windows.append((dataset, window))
    return windows


def _shards(settings: Settings, active: list[tuple[str, int]]) -> list[dict[str, str]]:
    """The Map's items: ``count`` per dataset; each a share of the rate budget."""
    total = sum(count for _, count in active)
    at_once = min(total, settings.max_concurrency or total) or 1
    rate = max(math.floor(settings.requests_per_second / at_once * 1000) / 1000, 0.001)
    return [
        {
            "dataset": dataset,
            "worker": settings.worker,
            "shard": str(number),
            "threads": str(settings.threads),
            "requests_per_second": f"{rate:g}",
        }
        for dataset, count in active
        for number in range(1, count + 1)
    ]


def _active(store: CheckpointStore, dataset: str) -> int:
    counts = store.summary(dataset)
    return counts[UnitStatus.PENDING] + counts[UnitStatus.IN_PROGRESS]


def _counts(status: DatasetStatus) -> dict[str, int]:
    return {s.value: n for s, n in status.counts.items() if n}


def _status(store: CheckpointStore, dataset: str, window: TimeWindow) -> dict[str, Any]:
    found = DatasetStatus.from_store(store, dataset, window)
    return {
        "dataset": dataset,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "ok": all(cp.status.ok for cp in found.units),
        "units": _counts(found),
        "files_done": found.files_done,
        "bytes_done": found.bytes_done,
        "errors": [{"unit": cp.unit_id, "error": cp.error} for cp in found.last_errors],
    }


def _datasets(event: Event, env: Mapping[str, str]) -> list[str]:
    given = event.get("datasets")
    if given is None:
        given = [d.strip() for d in env.get("AEP_EXTRACT_DATASETS", "").split(",")]
    if not isinstance(given, list) or not all(isinstance(d, str) for d in given):
        raise ConfigError("the event's datasets must be a list of dataset ids")
    datasets = list(dict.fromkeys(d for d in given if d))
    if not datasets:
        raise ConfigError(
            "no datasets: set AEP_EXTRACT_DATASETS or the event's datasets"
        )
    return datasets


def _windows(event: Event) -> list[tuple[str, TimeWindow]]:
    """The plan's ``windows``."""
    windows = event.get("windows")
    if not isinstance(windows, list):
        raise ConfigError("the event has no windows (the plan step's output)")
    try:
        return [
            (str(w["dataset"]), TimeWindow.parse(w["start"], w["end"])) for w in windows
        ]
    except (KeyError, TypeError):
        raise ConfigError("each window needs dataset, start and end") from None


def _moment(values: Mapping[str, Any], name: str) -> Optional[datetime]:
    value = values.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be an ISO 8601 text")
    return to_moment(value)
