"""aep_extract: copy AEP datasets to S3 or a directory, restartably, exactly once.

The public surface::

    from aep_extract import Extractor, AepSource, SQLiteCheckpointStore, LocalSink
    report = Extractor(AepSource.from_env(), store=SQLiteCheckpointStore("state.db"),
                       sink=LocalSink("out")).run("DATASET_ID", start, end)
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoints import (
        CheckpointStore,
        MemoryCheckpointStore,
        SQLiteCheckpointStore,
        open_store,
    )
    from .checkpoints.dynamodb import DynamoDBCheckpointStore
    from .config import AepConfig, ConcurrencyConfig, ExtractorConfig, RetryConfig
    from .errors import (
        AepExtractError,
        ApiError,
        AuthError,
        CatalogError,
        CheckpointConflict,
        CheckpointError,
        ConfigError,
        DeadlineExceeded,
        DeployFailed,
        DestinationMismatch,
        ExtractionFailed,
        IncompleteDownload,
        InvalidResponse,
        KeyCollisionError,
        MetricsError,
        MissingResourceError,
        NotFoundError,
        NothingNewToPlan,
        ServerError,
        SinkError,
        SourceError,
        ThrottledError,
        TokenUnavailable,
        TransformError,
        TransientNetworkError,
        Unauthorized,
        UnknownHost,
        UnsafeKeyError,
        UntrustedLinkError,
    )
    from .extractor import Extractor
    from .hooks import CallbackHooks, ExtractionHooks
    from .layout import KeyLayout
    from .models import (
        Batch,
        Checkpoint,
        FileCopy,
        FileRef,
        Lease,
        ObjectInfo,
        TimeWindow,
        UnitStatus,
        WorkUnit,
    )
    from .report import DatasetStatus, PlanResult, RunReport
    from .schedulers import Scheduler, SerialScheduler, ThreadPoolScheduler
    from .sinks import LocalSink, MemorySink, Sink, open_sink
    from .sinks.s3 import S3Sink
    from .sources import AepSource, open_source
    from .sources.http import HttpAepSource

__version__ = "0.1.0"

# Each public name is imported on first use, from its module: a notebook that only
# builds a config, or ``aep-extract --help``, imports neither requests nor boto3,
# and a Lambda cold start pays only for what its handler touches.
_MODULES: dict[str, tuple[str, ...]] = {
    ".checkpoints": (
        "CheckpointStore",
        "MemoryCheckpointStore",
        "SQLiteCheckpointStore",
        "open_store",
    ),
    ".config": ("AepConfig", "ConcurrencyConfig", "ExtractorConfig", "RetryConfig"),
    ".errors": (
        "AepExtractError",
        "ApiError",
        "AuthError",
        "CatalogError",
        "CheckpointConflict",
        "CheckpointError",
        "ConfigError",
        "DeadlineExceeded",
        "DeployFailed",
        "DestinationMismatch",
        "ExtractionFailed",
        "IncompleteDownload",
        "InvalidResponse",
        "KeyCollisionError",
        "MetricsError",
        "MissingResourceError",
        "NotFoundError",
        "NothingNewToPlan",
        "ServerError",
        "SinkError",
        "SourceError",
        "ThrottledError",
        "TokenUnavailable",
        "TransformError",
        "TransientNetworkError",
        "Unauthorized",
        "UnknownHost",
        "UnsafeKeyError",
        "UntrustedLinkError",
    ),
    ".extractor": ("Extractor",),
    ".hooks": ("CallbackHooks", "ExtractionHooks"),
    ".layout": ("KeyLayout",),
    ".models": (
        "Batch",
        "Checkpoint",
        "FileCopy",
        "FileRef",
        "Lease",
        "ObjectInfo",
        "TimeWindow",
        "UnitStatus",
        "WorkUnit",
    ),
    ".report": ("DatasetStatus", "PlanResult", "RunReport"),
    ".schedulers": ("Scheduler", "SerialScheduler", "ThreadPoolScheduler"),
    ".sinks": ("LocalSink", "MemorySink", "Sink", "open_sink"),
    ".sources": ("AepSource", "open_source"),
    ".checkpoints.dynamodb": ("DynamoDBCheckpointStore",),
    ".sinks.s3": ("S3Sink",),
    ".sources.http": ("HttpAepSource",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "AepConfig",
    "AepExtractError",
    "AepSource",
    "ApiError",
    "AuthError",
    "Batch",
    "CallbackHooks",
    "CatalogError",
    "Checkpoint",
    "CheckpointConflict",
    "CheckpointError",
    "CheckpointStore",
    "ConcurrencyConfig",
    "ConfigError",
    "DatasetStatus",
    "DeadlineExceeded",
    "DeployFailed",
    "DestinationMismatch",
    "DynamoDBCheckpointStore",
    "ExtractionFailed",
    "ExtractionHooks",
    "Extractor",
    "ExtractorConfig",
    "FileCopy",
    "FileRef",
    "HttpAepSource",
    "IncompleteDownload",
    "InvalidResponse",
    "KeyCollisionError",
    "KeyLayout",
    "Lease",
    "LocalSink",
    "MemoryCheckpointStore",
    "MemorySink",
    "MetricsError",
    "MissingResourceError",
    "NotFoundError",
    "NothingNewToPlan",
    "ObjectInfo",
    "PlanResult",
    "RetryConfig",
    "RunReport",
    "S3Sink",
    "SQLiteCheckpointStore",
    "Scheduler",
    "SerialScheduler",
    "ServerError",
    "Sink",
    "SinkError",
    "SourceError",
    "ThreadPoolScheduler",
    "ThrottledError",
    "TimeWindow",
    "TokenUnavailable",
    "TransformError",
    "TransientNetworkError",
    "Unauthorized",
    "UnitStatus",
    "UnknownHost",
    "UnsafeKeyError",
    "UntrustedLinkError",
    "WorkUnit",
    "__version__",
    "open_sink",
    "open_source",
    "open_store",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
