"""CloudWatchMetrics against moto: the metrics land with their dimension and values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aep_extract import MetricsError, RunReport, UnitStatus
from aep_extract.metrics import CloudWatchMetrics

REPORT = RunReport(
    dataset_id="ds-42",
    units={UnitStatus.COMPLETED: 3, UnitStatus.WAITING: 2, UnitStatus.FAILED: 1},
    units_completed=3,
    files_copied=7,
    bytes_copied=12_345,
    duration_seconds=4.5,
    retries=2,
    throttled=1,
    failures=(("u1", "boom"),),
)


def test_publish_puts_every_metric_with_the_dataset_dimension(moto_in_process):
    client = moto_in_process.client("cloudwatch")
    CloudWatchMetrics(session=moto_in_process, namespace="test/aep").publish(REPORT)

    listed = client.list_metrics(Namespace="test/aep")["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert names == {
        "FilesCopied",
        "BytesCopied",
        "FilesSkipped",
        "UnitsCompleted",
        "UnitsWaiting",
        "UnitsFailed",
        "Failures",
        "Retries",
        "Throttled",
        "DurationSeconds",
    }
    for metric in listed:
        assert metric["Dimensions"] == [{"Name": "DatasetId", "Value": "ds-42"}]

    now = datetime.now(timezone.utc)

    def total(name: str) -> float:
        stats = client.get_metric_statistics(
            Namespace="test/aep",
            MetricName=name,
            Dimensions=[{"Name": "DatasetId", "Value": "ds-42"}],
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(hours=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return float(sum(point["Sum"] for point in stats))

    assert total("FilesCopied") == 7
    assert total("BytesCopied") == 12_345
    assert total("UnitsWaiting") == 2
    assert total("UnitsFailed") == 1
    assert total("Failures") == 1
    assert total("Retries") == 2
    assert total("Throttled") == 1
    assert total("DurationSeconds") == 4.5


def test_default_namespace_and_a_given_client(moto_in_process):
    client = moto_in_process.client("cloudwatch")
    CloudWatchMetrics(client=client).publish(REPORT)
    assert client.list_metrics(Namespace="aep_extract")["Metrics"]


def test_refusal_is_a_metrics_error(moto_in_process):
    class Refusing:
        def put_metric_data(self, **kwargs):
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutMetricData"
            )

    with pytest.raises(MetricsError, match="AccessDenied"):
        CloudWatchMetrics(client=Refusing()).publish(REPORT)  # type: ignore[arg-type]
