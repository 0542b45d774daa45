"""The Lambda handlers' settings, from the environment the template sets
(``AEP_EXTRACT_*``, ``AEP_SECRET_ID``), and the extractor they build from them."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import attrs

from .._cli_args import duration, positive_int, positive_number
from ..checkpoints import open_store
from ..config import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_SAFETY_LAG_SECONDS,
    DEFAULT_WORKERS,
    ConcurrencyConfig,
    ExtractorConfig,
)
from ..errors import ConfigError
from ..extractor import Extractor
from ..sinks import open_sink
from .secrets import aep_source

WORKER_TYPES = ("glue", "ecs")


@attrs.frozen(kw_only=True)
class Settings:
    """What the template configures; see the AWS page of the docs."""

    env: Mapping[str, str] = attrs.field(repr=False)
    store: str
    secret_id: Optional[str]
    worker: str
    workers_per_dataset: int
    threads: int
    requests_per_second: float
    max_concurrency: Optional[int]
    lag: float

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> Settings:
        """Read the settings every handler needs.

        Raises:
            ConfigError: a variable is missing or malformed.
        """
        env = os.environ if env is None else env
        worker = env.get("AEP_EXTRACT_WORKER") or "glue"
        if worker not in WORKER_TYPES:
            raise ConfigError(
                f"AEP_EXTRACT_WORKER must be one of {', '.join(WORKER_TYPES)}"
            )
        return cls(
            env=env,
            store=required(env, "AEP_EXTRACT_STORE"),
            secret_id=env.get("AEP_SECRET_ID") or None,
            worker=worker,
            workers_per_dataset=_read(
                env, "AEP_EXTRACT_WORKERS_PER_DATASET", 1, positive_int
            ),
            threads=_read(env, "AEP_EXTRACT_THREADS", DEFAULT_WORKERS, positive_int),
            requests_per_second=_read(
                env,
                "AEP_EXTRACT_REQUESTS_PER_SECOND",
                DEFAULT_MAX_REQUESTS_PER_SECOND,
                positive_number,
            ),
            max_concurrency=_read(
                env, "AEP_EXTRACT_MAX_CONCURRENCY", None, positive_int
            ),
            lag=_read(env, "AEP_EXTRACT_LAG", DEFAULT_SAFETY_LAG_SECONDS, duration),
        )

    def get(self, name: str) -> str:
        """A required variable.

        Raises:
            ConfigError: it is not set.
        """
        return required(self.env, name)

    @contextlib.contextmanager
    def extractor(self) -> Iterator[Extractor]:
        """An extractor on the source, store and sink configured, all closed on
        exit; the plan's (and verify's) rate is the whole budget."""
        concurrency = ConcurrencyConfig(
            max_requests_per_second=self.requests_per_second
        )
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(
                aep_source(self.secret_id, concurrency=concurrency)
            )
            store = stack.enter_context(open_store(self.store))
            sink = stack.enter_context(
                open_sink(self.get("AEP_EXTRACT_SINK"), concurrency=concurrency)
            )
            config = ExtractorConfig(
                safety_lag_seconds=self.lag, concurrency=concurrency
            )
            yield stack.enter_context(
                Extractor(source, store=store, sink=sink, config=config)
            )


def required(env: Mapping[str, str], name: str) -> str:
    """``env[name]``, which must be set and not empty.

    Raises:
        ConfigError: it is not.
    """
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _read(
    env: Mapping[str, str], name: str, default: object, convert: Callable[[str], Any]
) -> Any:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return convert(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
