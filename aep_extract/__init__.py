"""aep_extract: copy AEP datasets to S3 or a directory, restartably, exactly once.

The public surface::

    from aep_extract import Extractor, AepSource, SQLiteCheckpointStore, LocalSink
    report = Extractor(AepSource.from_env(), store=SQLiteCheckpointStore("state.db"),
                       sink=LocalSink("out")).run("DATASET_ID", start, end)
"""

from __future__ import annotations

import logging

from .checkpoints import (
    CheckpointStore,
    MemoryCheckpointStore,
    SQLiteCheckpointStore,
    open_store,
)
from .config import AepConfig, ExtractorConfig, RetryConfig
from .errors import (
    AepExtractError,
    ApiError,
    AuthError,
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    ExtractionFailed,
    IncompleteDownload,
    InvalidResponse,
    NotFoundError,
    ServerError,
    SinkError,
    SourceError,
    ThrottledError,
    TransientNetworkError,
    UnsafeKeyError,
)
from .extractor import Extractor
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
from .sources import AepSource, HttpAepSource

__version__ = "0.1.0"

__all__ = [
    "AepConfig",
    "AepExtractError",
    "AepSource",
    "ApiError",
    "AuthError",
    "Batch",
    "Checkpoint",
    "CheckpointConflict",
    "CheckpointError",
    "CheckpointStore",
    "ConfigError",
    "DatasetStatus",
    "ExtractionFailed",
    "Extractor",
    "ExtractorConfig",
    "FileCopy",
    "FileRef",
    "HttpAepSource",
    "IncompleteDownload",
    "InvalidResponse",
    "KeyLayout",
    "Lease",
    "LocalSink",
    "MemoryCheckpointStore",
    "MemorySink",
    "NotFoundError",
    "ObjectInfo",
    "PlanResult",
    "RetryConfig",
    "RunReport",
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
    "TransientNetworkError",
    "UnitStatus",
    "UnsafeKeyError",
    "WorkUnit",
    "__version__",
    "open_sink",
    "open_store",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
