"""One store, one destination per dataset; every check before anything is written."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from aep_extract import (
    DestinationMismatch,
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    MissingResourceError,
    SQLiteCheckpointStore,
)
from aep_extract.cli import main
from aep_extract.sinks.s3 import S3Sink

from .helpers import DATASET, END, START, expected_tree, run_args, sink_tree


def test_a_second_sink_with_the_same_store_is_refused_naming_the_fix(
    fake_aep, fake_aep_env, paths, tmp_path, capsys
):
    assert main(run_args(paths["sink"], paths["store"])) == 0
    other = tmp_path / "other"
    capsys.readouterr()
    assert main(run_args(str(other), paths["store"])) == 2
    err = capsys.readouterr().err
    assert f"was copied with this store to {LocalSink(paths['out']).url}" in err
    assert "use another store" in err
    assert not other.exists()
    # With a store of its own, the second sink gets every file.
    second = f"sqlite:///{tmp_path / 'second.db'}"
    assert main(run_args(str(other), second)) == 0
    assert sink_tree(LocalSink(other)) == expected_tree(fake_aep)


def test_another_key_layout_is_another_destination(fake_aep, tmp_path):
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    sink = LocalSink(tmp_path / "out")

    def extractor(template: str) -> Extractor:
        source = HttpAepSource.from_env(fake_aep.env())
        config = ExtractorConfig(key_template=template)
        return Extractor(source, store=store, sink=sink, config=config)

    with extractor(ExtractorConfig().key_template) as first:
        assert first.run(DATASET, START, END).ok
    flat = "{dataset_id}/{batch_id}/{dataset_file_id}/{name}"
    with extractor(flat) as second, pytest.raises(DestinationMismatch) as info:
        second.run(DATASET, START, END)
    assert info.value.recorded == first.destination
    assert "keys=" + flat in info.value.destination


def test_a_missing_bucket_is_found_before_any_unit_is_recorded(
    fake_aep, fake_aep_env, paths, monkeypatch, capsys
):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="elsewhere")
        assert main(run_args("s3://no-such-bucket/aep", paths["store"])) == 2
        assert "no-such-bucket" in capsys.readouterr().err
        store = SQLiteCheckpointStore(paths["db"])
        assert store.list(DATASET) == []
        assert store.destination(DATASET) is None
        with pytest.raises(MissingResourceError):
            S3Sink("s3://no-such-bucket").check()
