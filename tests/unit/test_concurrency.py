"""ConcurrencyConfig: sizes derived from the workers, checked, and what is built."""

from __future__ import annotations

from typing import Any

import pytest

from aep_extract import (
    AepConfig,
    ConcurrencyConfig,
    ConfigError,
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    MemoryCheckpointStore,
    MemorySink,
    ThreadPoolScheduler,
)
from aep_extract.testing import MemoryAepSource

PLATFORM = "https://platform.example"


def aep_config(**fields: object) -> AepConfig:
    return AepConfig(
        client_id="id",
        client_secret="secret",
        org_id="org@AdobeOrg",
        platform_url=PLATFORM,
        **fields,  # type: ignore[arg-type]
    )


def source_pool_maxsize(source: HttpAepSource) -> int:
    """The real urllib3 pool's size for the platform host."""
    adapter: Any = source._client.transport.session.get_adapter(PLATFORM)
    pool = adapter.poolmanager.connection_from_url(PLATFORM)
    return int(pool.pool.maxsize)


def test_defaults_derive_from_the_workers():
    default = ConcurrencyConfig()
    assert (default.workers, default.in_flight, default.requests_per_second) == (
        8,
        16,
        2000.0,  # the safety ceiling: the rate starts at 50 and probes up to it
    )
    assert (default.http_connections, default.sink_connections) == (20, 12)
    wide = ConcurrencyConfig(workers=32)
    assert (wide.in_flight, wide.http_connections, wide.sink_connections) == (
        64,
        68,
        36,
    )


def test_multistream_knobs_derive_from_the_workers_and_the_part_size():
    default = ConcurrencyConfig()
    mib = 1024 * 1024
    assert (default.part_bytes, default.threshold) == (8 * mib, 16 * mib)
    assert (default.parts_per_file, default.parts_in_flight) == (16, 16)
    chosen = ConcurrencyConfig(
        workers=2,
        part_size=1000,
        multistream_threshold=5000,
        max_parts_per_file=3,
        max_parts_in_flight=4,
    )
    assert (chosen.part_bytes, chosen.threshold) == (1000, 5000)
    assert (chosen.parts_per_file, chosen.parts_in_flight) == (3, 4)
    assert ConcurrencyConfig(workers=3).parts_in_flight == 6


def test_a_file_gets_at_most_10000_parts_of_at_least_the_sinks_minimum():
    mib = 1024 * 1024
    default = ConcurrencyConfig()
    assert default.part_size_for(100 * mib) == 8 * mib
    assert default.part_size_for(80_000 * mib) == 8 * mib  # 10,000 parts exactly
    assert default.part_size_for(80_000 * mib + 1) == 9 * mib  # grown to whole MiB
    assert ConcurrencyConfig(part_size=64 * 1024).part_size_for(mib, 5 * mib) == (
        5 * mib
    )


def test_set_values_win_over_derived_ones():
    chosen = ConcurrencyConfig(
        workers=4, max_in_flight=10, http_pool_size=10, sink_pool_size=50
    )
    assert (chosen.in_flight, chosen.http_connections, chosen.sink_connections) == (
        10,
        10,
        50,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"workers": 0}, "workers must be an integer of 1 or more"),
        ({"workers": 2.5}, "workers must be an integer"),
        ({"workers": True}, "workers must be an integer"),
        ({"max_in_flight": 0}, "max_in_flight must be"),
        ({"http_pool_size": -1}, "http_pool_size must be"),
        ({"max_requests_per_second": 0}, "max_requests_per_second must be"),
        ({"max_requests_per_second": float("inf")}, "max_requests_per_second"),
        ({"workers": 8, "http_pool_size": 15}, "below max_in_flight 16"),
        ({"max_in_flight": 40, "http_pool_size": 39}, "below max_in_flight 40"),
        ({"workers": 20, "sink_pool_size": 19}, "below workers 20"),
        ({"part_size": 0}, "part_size must be"),
        ({"multistream_threshold": -1}, "multistream_threshold must be"),
        ({"max_parts_per_file": 0}, "max_parts_per_file must be"),
        ({"max_parts_in_flight": 1.5}, "max_parts_in_flight must be"),
    ],
)
def test_invalid_values_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        ConcurrencyConfig(**fields)


def test_the_source_pool_holds_every_request_in_flight():
    concurrency = ConcurrencyConfig(workers=20)
    with HttpAepSource(aep_config(concurrency=concurrency)) as source:
        assert source._client.limiter.max_in_flight == 40
        assert source_pool_maxsize(source) == 44
        assert source._client.limiter.max_rate == 2000.0


def test_the_aep_aliases_win_over_concurrency():
    config = aep_config(
        concurrency=ConcurrencyConfig(workers=2),
        max_in_flight=30,
        max_requests_per_second=7.5,
    )
    with HttpAepSource(config) as source:
        assert source._client.limiter.max_in_flight == 30
        assert source._client.limiter.max_rate == 7.5
        assert source_pool_maxsize(source) == 34


def test_an_alias_that_outgrows_the_pool_is_a_config_error():
    with pytest.raises(ConfigError, match="below max_in_flight 30"):
        aep_config(concurrency=ConcurrencyConfig(http_pool_size=20), max_in_flight=30)


def test_from_env_reads_the_limits_into_the_concurrency():
    env = {
        "AEP_CLIENT_ID": "id",
        "AEP_CLIENT_SECRET": "secret",
        "AEP_ORG_ID": "org@AdobeOrg",
        "AEP_MAX_IN_FLIGHT": "12",
    }
    config = AepConfig.from_env(env, concurrency=ConcurrencyConfig(workers=3))
    assert config.effective_concurrency == ConcurrencyConfig(
        workers=3, max_in_flight=12
    )


def test_the_extractor_runs_as_many_workers_as_configured():
    config = ExtractorConfig(concurrency=ConcurrencyConfig(workers=5))
    with Extractor(
        MemoryAepSource("ds", {}),
        store=MemoryCheckpointStore(),
        sink=MemorySink(),
        config=config,
    ) as extractor:
        assert extractor.scheduler.max_workers == 5


def test_a_scheduler_wider_than_the_concurrency_is_warned_about(caplog):
    with Extractor(
        MemoryAepSource("ds", {}),
        store=MemoryCheckpointStore(),
        sink=MemorySink(),
        scheduler=ThreadPoolScheduler(32),
    ):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "the scheduler runs 32 workers but the concurrency is sized for 8: "
        "connection pools may be too small; pass the same "
        "ConcurrencyConfig(workers=32) to the config, source and sink"
    ]
