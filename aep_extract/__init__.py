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

from .checkpoints import (
    CheckpointStore,
    MemoryCheckpointStore,
    SQLiteCheckpointStore,
    open_store,
)
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
from .sources import AepSource, open_source

if TYPE_CHECKING:
    from .checkpoints.dynamodb import DynamoDBCheckpointStore
    from .sinks.s3 import S3Sink
    from .sources.http import HttpAepSource

__version__ = "0.1.0"

# Loaded on first use: the AWS defaults import boto3 (a Lambda cold start pays for
# it), the HTTP source requests; a notebook that only builds a config needs neither.
_LAZY = {
    "DynamoDBCheckpointStore": ".checkpoints.dynamodb",
    "HttpAepSource": ".sources.http",
    "S3Sink": ".sinks.s3",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
