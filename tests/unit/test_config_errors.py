"""Public classes built with invalid values raise ConfigError (also a ValueError)."""

from __future__ import annotations

from typing import Any

import pytest

from aep_extract import (
    AepConfig,
    AepExtractError,
    ConfigError,
    ExtractorConfig,
    FileRef,
    KeyLayout,
    LocalSink,
    MemoryCheckpointStore,
    MetricsError,
    MissingResourceError,
    RetryConfig,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
    TimeWindow,
    UnitStatus,
    WorkUnit,
    open_sink,
    open_store,
)
from aep_extract._logging import make_formatter
from aep_extract.sinks.s3 import S3Sink

CREDENTIALS: dict[str, Any] = {
    "client_id": "cid",
    "client_secret": "secret",
    "org_id": "ORG@AdobeOrg",
}


def test_config_error_is_a_value_error_in_the_tree():
    assert issubclass(ConfigError, AepExtractError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(MissingResourceError, ConfigError)
    assert issubclass(MetricsError, AepExtractError)
    assert not issubclass(MetricsError, ConfigError)


BAD = {
    "RetryConfig attempts 0": lambda: RetryConfig(attempts=0),
    "RetryConfig attempts text": lambda: RetryConfig(attempts="3"),  # type: ignore[arg-type]
    "RetryConfig negative wait": lambda: RetryConfig(initial_wait=-1),
    "AepConfig empty client id": lambda: AepConfig(**{**CREDENTIALS, "client_id": ""}),
    "AepConfig chunk 0": lambda: AepConfig(**CREDENTIALS, chunk_size=0),
    "AepConfig timeout 0": lambda: AepConfig(**CREDENTIALS, read_timeout=0),
    "AepConfig url": lambda: AepConfig(**CREDENTIALS, platform_url="ftp://x"),
    "AepConfig url query": lambda: AepConfig(**CREDENTIALS, ims_url="https://h/?a=1"),
    "AepConfig rate": lambda: AepConfig(**CREDENTIALS, max_requests_per_second=0),
    "AepConfig in flight": lambda: AepConfig(**CREDENTIALS, max_in_flight=True),
    "ExtractorConfig lease": lambda: ExtractorConfig(lease_seconds=0),
    "ExtractorConfig attempts": lambda: ExtractorConfig(unit_attempts=0),
    "ExtractorConfig crashes": lambda: ExtractorConfig(unit_crashes=0),
    "ExtractorConfig split": lambda: ExtractorConfig(files_per_unit=0),
    "ExtractorConfig lag": lambda: ExtractorConfig(safety_lag_seconds=-1),
    "ExtractorConfig key template": lambda: ExtractorConfig(key_template="{nope}"),
    "ExtractorConfig manifest template": lambda: ExtractorConfig(
        manifest_template="{dataset_id}/{name}.json"
    ),
    "KeyLayout file template": lambda: KeyLayout(file_template="{batch_id}"),
    "KeyLayout manifest template": lambda: KeyLayout(manifest_template="m.json"),
    "TimeWindow reversed": lambda: TimeWindow.parse(
        "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"
    ),
    "TimeWindow naive": lambda: TimeWindow.parse("2024-01-01T00:00:00", "2024-01-02"),
    "FileRef negative length": lambda: FileRef(
        dataset_file_id="f", name="n", length=-1
    ),
    "WorkUnit negative offset": lambda: WorkUnit(
        dataset_id="d", batch_id="b", batch_created_ms=0, first_offset=-1
    ),
    "ThreadPoolScheduler 0": lambda: ThreadPoolScheduler(0),
    "LocalSink empty": lambda: LocalSink(""),
    "LocalSink None": lambda: LocalSink(None),  # type: ignore[arg-type]
    "S3Sink not s3": lambda: S3Sink("https://bucket/prefix"),
    "S3Sink None": lambda: S3Sink(None),  # type: ignore[arg-type]
    "S3Sink bucket": lambda: S3Sink("s3://UPPER/prefix"),
    "open_sink unknown": lambda: open_sink("ftp://host/x"),
    "open_sink None": lambda: open_sink(None),  # type: ignore[arg-type]
    "SQLiteCheckpointStore None": lambda: SQLiteCheckpointStore(None),  # type: ignore[arg-type]
    "open_store unknown": lambda: open_store("redis://x"),
    "open_store None": lambda: open_store(None),  # type: ignore[arg-type]
    "open_store table": lambda: open_store("dynamodb://a b"),
    "register as Completed": lambda: MemoryCheckpointStore().register(
        [], status=UnitStatus.COMPLETED
    ),
    "empty destination": lambda: MemoryCheckpointStore().bind_destination("d", ""),
    "log format": lambda: make_formatter("xml"),
}


@pytest.mark.parametrize("build", BAD.values(), ids=BAD.keys())
def test_invalid_values_raise_config_error(build):
    with pytest.raises(ConfigError):
        build()


@pytest.mark.parametrize("name", ["", "ab", "a b", "t" * 256, None])
def test_dynamodb_store_refuses_a_bad_table_name_before_calling_aws(name):
    from aep_extract.checkpoints.dynamodb import DynamoDBCheckpointStore

    class NoClient:
        def __getattr__(self, attribute):
            raise AssertionError(f"AWS called: {attribute}")

    with pytest.raises(ConfigError, match="not a DynamoDB table name"):
        DynamoDBCheckpointStore(name, client=NoClient())  # type: ignore[arg-type]


def test_attrs_messages_name_the_field():
    with pytest.raises(ConfigError, match="'attempts' must be >= 1"):
        RetryConfig(attempts=0)
    with pytest.raises(ConfigError, match="'lease_seconds': '>' not supported"):
        ExtractorConfig(lease_seconds="soon")  # type: ignore[arg-type]


def test_value_error_handlers_still_catch_config_errors():
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        make_formatter("xml")
