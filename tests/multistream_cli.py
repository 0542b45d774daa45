"""``python -m tests.multistream_cli ARGS``: ``aep-extract`` with the concurrency
knobs of ``AEP_TEST_CONCURRENCY`` (JSON of :class:`~aep_extract.ConcurrencyConfig`
fields, e.g. a small ``part_size``), so that crash tests copy files in parts.

``part_size`` below S3's 5 MiB also lowers the S3 sink's minimum: the test's moto
server must then accept small parts too (``moto.s3.models.S3_UPLOAD_PART_MIN_SIZE``).
"""

from __future__ import annotations

import functools
import json
import os
import sys

from aep_extract import cli
from aep_extract.config import ConcurrencyConfig
from aep_extract.sinks.s3 import S3Sink

ENV = "AEP_TEST_CONCURRENCY"


def main() -> int:
    knobs = json.loads(os.environ.get(ENV) or "{}")
    # The CLI builds its ConcurrencyConfig by this name: give it the knobs.
    setattr(cli, "ConcurrencyConfig", functools.partial(ConcurrencyConfig, **knobs))  # noqa: B010
    if "part_size" in knobs:
        S3Sink.min_part_size = min(S3Sink.min_part_size, knobs["part_size"])
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
