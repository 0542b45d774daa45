"""What every process entry point shares: the ``aep-extract`` command
(:mod:`aep_extract.cli`) and the AWS worker (:mod:`aep_extract.aws.worker`).

Exit codes, which errors are the caller's configuration (exit 2) and which a failure
(exit 1), logging to stderr, SIGTERM/SIGINT handling and the ``--metrics``
publishers are defined here once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Optional, Union

from . import _liveness
from ._logging import make_formatter
from .errors import AepExtractError, AuthError, ConfigError, MetricsError, NotFoundError

if TYPE_CHECKING:
    from .extractor import Extractor
    from .metrics import CloudWatchMetrics, EmfMetrics
    from .report import RunReport

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130

CONFIG_ERRORS = (ConfigError, AuthError, NotFoundError)
"""Errors a retry cannot fix: the caller's arguments, settings or credentials (exit 2;
the AWS pipeline's ``Misconfigured``)."""

Publisher = Union["CloudWatchMetrics", "EmfMetrics"]


def exit_code(prog: str, work: Callable[[], int]) -> int:
    """Run ``work`` and return its exit code; an error becomes one line on stderr
    and exit 2 (:data:`CONFIG_ERRORS`) or 1 (any other of the library's errors)."""
    try:
        return work()
    except CONFIG_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AepExtractError as exc:
        print(f"{prog}: failed: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def configure_logging(level: int, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    # azure-core logs every request and answer at INFO: only DEBUG shows them.
    quiet_azure = max(level, logging.WARNING)
    logging.getLogger("azure").setLevel(
        level if level <= logging.DEBUG else quiet_azure
    )
    # What a run waits for is INFO, yet worth seeing by default: only -q hides it.
    _liveness.logger.setLevel(
        min(level, logging.INFO) if level <= logging.WARNING else level
    )


@contextlib.contextmanager
def stop_on_signals(extractor: Extractor) -> Iterator[None]:
    """SIGTERM (ECS, Batch, Glue) or SIGINT stops claiming and gives leases back;
    a second one aborts the files in flight."""

    signals = []

    def stop(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) == 1:
            logger.warning(
                "signal %d: finishing in-flight files, then stopping", signum
            )
            extractor.stop()
        else:
            logger.warning("signal %d again: aborting in-flight files", signum)
            extractor.stop(abort=True)

    previous = {
        sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def metrics_publisher(kind: str) -> Optional[Publisher]:
    """The publisher of ``--metrics`` (``none``, ``cloudwatch`` or ``emf``), made
    before the run, so that a configuration error (no AWS region for CloudWatch)
    stops the command before any work."""
    if kind == "none":
        return None
    from .metrics import CloudWatchMetrics, EmfMetrics

    return CloudWatchMetrics() if kind == "cloudwatch" else EmfMetrics()


def publish_metrics(publisher: Optional[Publisher], report: RunReport) -> None:
    """Publish the run's metrics; a failure to do so is logged, not fatal."""
    if publisher is None:
        return
    try:
        publisher.publish(report)
    except MetricsError as exc:
        logger.warning("metrics not published: %s", exc)
