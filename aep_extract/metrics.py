"""CloudWatch metrics of a run, from its :class:`~aep_extract.report.RunReport`.

Off by default. :class:`CloudWatchMetrics` calls ``PutMetricData``;
:class:`EmfMetrics` writes one line in CloudWatch's embedded metric format (EMF),
which CloudWatch Logs turns into metrics with no API call (Lambda, ECS with the
awslogs driver, or the CloudWatch agent). Both publish the same metrics, with the
dimension ``DatasetId``:

=================  =======  ==============================================
Metric             Unit     Value
=================  =======  ==============================================
FilesCopied        Count    files this run wrote to the sink
BytesCopied        Bytes    bytes this run wrote to the sink
FilesSkipped       Count    files an earlier run had copied
UnitsCompleted     Count    units this run completed
UnitsWaiting       Count    units of the dataset waiting for AEP to promote
                            their batch when the run ended (alarm on it to
                            catch a batch stuck in ``loading``)
UnitsFailed        Count    units of the dataset Failed when the run ended
                            (every attempt used: alarm on its maximum)
Failures           Count    failed unit attempts (a unit may succeed later)
Retries            Count    requests retried (source, store, sink)
Throttled          Count    429s from the platform, AWS throttles
DurationSeconds    Seconds  the run's wall-clock time
=================  =======  ==============================================
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Optional

from .errors import MetricsError as MetricsError  # its first home; still importable
from .models import UnitStatus
from .report import RunReport

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudwatch import CloudWatchClient

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "aep_extract"
"""The CloudWatch namespace unless one is given."""

DIMENSION = "DatasetId"


def report_metrics(report: RunReport) -> list[tuple[str, str, float]]:
    """``(name, unit, value)`` of every metric of a run."""
    return [
        ("FilesCopied", "Count", report.files_copied),
        ("BytesCopied", "Bytes", report.bytes_copied),
        ("FilesSkipped", "Count", report.files_skipped),
        ("UnitsCompleted", "Count", report.units_completed),
        ("UnitsWaiting", "Count", report.units.get(UnitStatus.WAITING, 0)),
        ("UnitsFailed", "Count", report.units.get(UnitStatus.FAILED, 0)),
        ("Failures", "Count", len(report.failures)),
        ("Retries", "Count", report.retries),
        ("Throttled", "Count", report.throttled),
        ("DurationSeconds", "Seconds", round(report.duration_seconds, 3)),
    ]


class CloudWatchMetrics:
    """Publishes a run's metrics with CloudWatch ``PutMetricData``.

    Args:
        client: a boto3 CloudWatch client; else one is made from ``session``.
        session: a boto3 session (default: boto3's own credential chain).
        namespace: the CloudWatch namespace.

    Raises:
        ConfigError: no AWS region, an unknown profile (or another AWS
            configuration error) while making the client; the message says what
            to set.

    Example:
        >>> CloudWatchMetrics(namespace="etl/aep").publish(report)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        client: Optional[CloudWatchClient] = None,
        session: Optional[boto3.Session] = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        if client is None:
            import boto3

            from ._aws_errors import aws_config_errors

            with aws_config_errors():
                client = (session or boto3.Session()).client("cloudwatch")
        self.client = client
        self.namespace = namespace

    def publish(self, report: RunReport) -> None:
        """Send the report's metrics in one ``PutMetricData`` call.

        Raises:
            MetricsError: CloudWatch refused or could not be reached, or no AWS
                credentials were found (the message says what to set).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        from ._aws_errors import config_problem

        dimensions = [{"Name": DIMENSION, "Value": report.dataset_id}]
        data: list[Any] = [
            {"MetricName": name, "Unit": unit, "Value": value, "Dimensions": dimensions}
            for name, unit, value in report_metrics(report)
        ]
        try:
            self.client.put_metric_data(Namespace=self.namespace, MetricData=data)
        except (BotoCoreError, ClientError) as exc:
            # Not a ConfigError: a run's metrics never change its outcome.
            problem = config_problem(exc) or str(exc)
            raise MetricsError(f"PutMetricData to {self.namespace}: {problem}") from exc
        logger.info(
            "published %d metrics to CloudWatch namespace %s",
            len(data),
            self.namespace,
        )


class EmfMetrics:
    """Writes a run's metrics as one CloudWatch embedded-metric-format JSON line.

    Args:
        stream: where to write the line (default stdout, which Lambda and the
            awslogs driver ship to CloudWatch Logs); ignored when ``log`` is given.
        log: a logger to log the line to at INFO instead (its handler must not
            add a prefix, or CloudWatch will not read the line).
        namespace: the CloudWatch namespace.
    """

    def __init__(
        self,
        *,
        stream: Optional[IO[str]] = None,
        log: Optional[logging.Logger] = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.stream = stream
        self.log = log
        self.namespace = namespace

    def document(self, report: RunReport) -> dict[str, Any]:
        """The EMF document of the report."""
        metrics = report_metrics(report)
        return {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [[DIMENSION]],
                        "Metrics": [
                            {"Name": name, "Unit": unit} for name, unit, _ in metrics
                        ],
                    }
                ],
            },
            DIMENSION: report.dataset_id,
            **{name: value for name, _, value in metrics},
        }

    def publish(self, report: RunReport) -> None:
        """Write the report's EMF line."""
        line = json.dumps(self.document(report), separators=(",", ":"))
        if self.log is not None:
            self.log.info("%s", line)
            return
        stream = sys.stdout if self.stream is None else self.stream
        stream.write(line + "\n")
        stream.flush()
