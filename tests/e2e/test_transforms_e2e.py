"""Transforms in whole extractions over real HTTP: XDM Parquet files served by the
fake platform, transformed on the way into a local sink, recorded in manifests,
checked by ``verify``, and exact after crashes and reruns."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys

import attrs
import pyarrow.parquet as pq
import pytest

from aep_extract import (
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    MemoryCheckpointStore,
    MemorySink,
    RunReport,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
    UnitStatus,
)
from aep_extract.cli import main
from aep_extract.testing import FakeAepPlatform, FaultPlan
from aep_extract.transforms import Transform, open_transform

from ..crash_harness import FAULTS, run_with_kills
from ..transform_scenario import (
    END,
    PROJECT,
    SPECS,
    START,
    expected_outputs,
    xdm_platform,
)
from .helpers import DATASET, manifests


def extractor(platform, tmp_path, specs, **config) -> Extractor:
    return Extractor(
        HttpAepSource.from_env(platform.env()),
        store=SQLiteCheckpointStore(tmp_path / "state.db"),
        sink=LocalSink(tmp_path / "out"),
        scheduler=ThreadPoolScheduler(4),
        config=ExtractorConfig(**config),
        transform=specs,
        progress=False,
    )


def data_objects(sink) -> dict[str, bytes]:
    return {
        key: sink.read_bytes(key)
        for key in sink.list_keys()
        if "/_manifest." not in key
    }


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_builtin_lands_its_outputs_and_manifests_record_them(tmp_path, name):
    specs = SPECS[name]
    with xdm_platform() as platform:
        expected = expected_outputs(platform, specs)
        with extractor(platform, tmp_path, specs) as ex:
            report = ex.run(DATASET, START, END)
            findings = ex.verify(DATASET, START, END).findings
    assert report.ok
    assert report.files_copied == 12
    sink = LocalSink(tmp_path / "out")
    assert data_objects(sink) == expected  # the outputs only: no source file
    assert findings == ()
    spec = open_transform(specs).spec
    for manifest in manifests(sink).values():
        for entry in manifest["files"]:
            assert entry["transform"] == spec
            assert "key" not in entry
            assert "sha256" not in entry
            (output,) = entry["outputs"]
            assert output["size"] == len(expected[output["key"]])
            digest = hashlib.sha256(expected[output["key"]]).hexdigest()
            assert output["sha256"] == digest
    info = sink.stat(next(iter(expected)))
    assert info is not None
    assert info.metadata is not None
    assert info.metadata["aep-transform"]


def test_a_projection_keeps_the_nested_fields_asked_for(tmp_path):
    with (
        xdm_platform(batches=1) as platform,
        extractor(platform, tmp_path, [PROJECT]) as ex,
    ):
        ex.run(DATASET, START, END)
    sink = LocalSink(tmp_path / "out")
    key = next(iter(data_objects(sink)))
    assert key.endswith(".parquet")
    assert ".snappy." not in key
    table = pq.read_table(io.BytesIO(sink.read_bytes(key)))
    assert table.column_names == ["_id", "timestamp", "eventType", "productListItems"]
    assert str(table.schema.field("productListItems").type) == (
        "list<element: struct<SKU: string>>"
    )


def test_a_rerun_keeps_the_outputs_and_writes_the_same_manifests(tmp_path):
    specs = SPECS["jsonl"]
    with xdm_platform() as platform:
        with extractor(platform, tmp_path, specs) as ex:
            ex.run(DATASET, START, END)
        sink = LocalSink(tmp_path / "out")
        before = {k: sink.read_bytes(k) for k in sink.list_keys()}
        # Forget the run (as after a store lost): the outputs prove themselves.
        (tmp_path / "state.db").unlink()
        platform.clear_requests()
        with extractor(platform, tmp_path, specs) as ex:
            report = ex.run(DATASET, START, END)
        downloads = [r for r in platform.requests if "path" in r.query]
    assert report.ok
    assert report.files_skipped == 12
    assert report.files_copied == 0
    assert downloads == []
    assert {k: sink.read_bytes(k) for k in sink.list_keys()} == before


def test_outputs_of_another_transform_are_replaced_not_taken(tmp_path):
    with xdm_platform(batches=1) as platform:
        with extractor(platform, tmp_path, ["parquet:compression=gzip"]) as ex:
            ex.run(DATASET, START, END)
        (tmp_path / "state.db").unlink()
        with extractor(platform, tmp_path, ["parquet:compression=zstd"]) as ex:
            report = ex.run(DATASET, START, END)
        expected = expected_outputs(platform, ["parquet:compression=zstd"])
    assert report.files_copied == 3
    assert report.files_skipped == 0
    assert data_objects(LocalSink(tmp_path / "out")) == expected


def test_a_file_the_transform_cannot_read_fails_its_unit_at_once(tmp_path):
    """The demo's own batches hold random bytes, not Parquet: TransformError, no
    retry, and no output of that file."""
    with FakeAepPlatform.generate(batches=1, other_batches=0) as platform:
        window = platform.batches_of(DATASET)
        with extractor(platform, tmp_path, [PROJECT], unit_attempts=3) as ex:
            report = ex.run(DATASET, "2024-06-01T00:00:00Z", "2024-06-30T00:00:00Z")
            units = ex.store.list(DATASET)
    assert window
    failed = [cp for cp in units if cp.status is UnitStatus.FAILED]
    assert failed
    assert all(cp.attempts == 1 for cp in failed)
    assert all("TransformError" in (cp.error or "") for cp in failed)
    assert not report.ok
    assert data_objects(LocalSink(tmp_path / "out")) == {}


def test_short_and_broken_downloads_are_retried_and_outputs_stay_exact(tmp_path):
    plan = FaultPlan.parse("seed=3,truncate=0.3@download,reset=0.2@download")
    with xdm_platform(faults=plan) as platform:
        with extractor(platform, tmp_path, SPECS["filter"]) as ex:
            report = ex.run(DATASET, START, END)
        served = platform.faults_served
        platform.set_faults(None)
        expected = expected_outputs(platform, SPECS["filter"])
    assert served.get("truncate", 0) + served.get("reset", 0) > 0
    assert report.ok
    assert data_objects(LocalSink(tmp_path / "out")) == expected


def test_cli_run_with_transforms_then_verify(tmp_path, capsys, monkeypatch):
    store, out = f"sqlite:///{tmp_path / 'state.db'}", str(tmp_path / "out")
    window = ["--dataset", DATASET, "--start", START, "--end", END]
    with xdm_platform() as platform:
        for name, value in platform.env().items():
            monkeypatch.setenv(name, value)
        code = main(
            ["-q", "run", *window, "--sink", out, "--store", store,
             "--transform", PROJECT, "--transform", "jsonl",
             "--spool-dir", str(tmp_path)]
        )  # fmt: skip
        assert code == 0, capsys.readouterr()
        assert main(["verify", *window, "--sink", out, "--store", store]) == 0
        expected = expected_outputs(platform, SPECS["jsonl"])
    sink = LocalSink(out)
    assert data_objects(sink) == expected
    first = gzip.decompress(next(iter(expected.values()))).splitlines()[0]
    assert set(json.loads(first)) == {
        "_id",
        "timestamp",
        "eventType",
        "productListItems",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--transform", "nosuch"], "--transform: "),
        (["--transform", "project"], "needs columns="),
        (
            ["--transform", "jsonl", "--glue-table", "db.t", "--sink", "s3://b/p"],
            "--glue-table needs Parquet outputs",
        ),
    ],
)
def test_cli_refuses_bad_transforms_before_anything(tmp_path, capsys, extra, message):
    args = ["run", "--dataset", DATASET, "--start", START, "--end", END,
            "--store", f"sqlite:///{tmp_path / 'state.db'}"]  # fmt: skip
    if "--sink" not in extra:
        args += ["--sink", str(tmp_path / "out")]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "state.db").exists()


def test_sigkill_at_random_moments_with_a_transform_then_rerun_is_exact(tmp_path):
    plan = FaultPlan.parse(FAULTS)
    specs = SPECS["jsonl"]
    with xdm_platform(batches=8, rows=3000, faults=plan) as platform:
        env = {**os.environ, **platform.env()}
        args = [
            "run", "--dataset", DATASET, "--start", START, "--end", END,
            "--sink", str(tmp_path / "out"),
            "--store", f"sqlite:///{tmp_path / 'state.db'}",
            "--workers", "4", "--lease-seconds", "2",
            *[part for spec in specs for part in ("--transform", spec)],
        ]  # fmt: skip
        result = run_with_kills(args, env, kills=4, seed=9)
        platform.set_faults(None)
        expected = expected_outputs(platform, specs)
        clean = tmp_path / "clean"
        clean.mkdir()
        with extractor(platform, clean, specs) as ex:
            ex.run(DATASET, START, END)
        verify = subprocess.run(
            [sys.executable, "-m", "aep_extract", "verify", "--dataset", DATASET,
             "--start", START, "--end", END, "--sink", str(tmp_path / "out"),
             "--store", f"sqlite:///{tmp_path / 'state.db'}"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.final_exit == 0, result.final_output
    assert result.kills >= 1
    crashed, reference = LocalSink(tmp_path / "out"), LocalSink(clean / "out")
    assert data_objects(crashed) == expected
    # Manifests included: every object equals a clean run's, and nothing else.
    assert {k: crashed.read_bytes(k) for k in crashed.list_keys()} == {
        k: reference.read_bytes(k) for k in reference.list_keys()
    }
    assert [p for p in (tmp_path / "out").rglob(".*.part")] == []
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_verify_checks_each_output_against_the_manifest(tmp_path):
    with (
        xdm_platform(batches=2) as platform,
        extractor(platform, tmp_path, SPECS["project"]) as ex,
    ):
        ex.run(DATASET, START, END)
        sink = LocalSink(tmp_path / "out")
        changed, gone = sorted(data_objects(sink))[:2]
        sink.write_bytes(changed, sink.read_bytes(changed)[:-1] + b"!")
        (tmp_path / "out" / gone).unlink()
        broken = sorted(manifests(sink))[-1]
        manifest = json.loads(sink.read_bytes(broken))
        manifest["files"][0]["outputs"] = "not a list"
        sink.write_bytes(broken, json.dumps(manifest).encode())
        kinds = {(f.kind.value, f.key) for f in ex.verify(DATASET, START, END).findings}
    assert ("checksum-mismatch", changed) in kinds
    assert ("missing-object", gone) in kinds
    assert ("unreadable-manifest", broken) in kinds


class NoMetadataSink(MemorySink):
    """A sink that keeps no metadata, as a custom sink may not."""

    def stat(self, key):
        info = super().stat(key)
        return None if info is None else attrs.evolve(info, metadata=None)


def test_without_metadata_or_a_record_outputs_are_made_again(tmp_path):
    """Nothing proves unrecorded outputs in a sink without metadata: a run with a
    fresh store transforms every file again, to the same bytes."""
    sink = NoMetadataSink()
    specs = SPECS["project"]

    def run() -> RunReport:
        with Extractor(
            HttpAepSource.from_env(platform.env()),
            store=MemoryCheckpointStore(),
            sink=sink,
            transform=specs,
            progress=False,
        ) as ex:
            return ex.run(DATASET, START, END)

    with xdm_platform(batches=2) as platform:
        assert run().files_copied == 6
        first = data_objects(sink)
        again = run()
        expected = expected_outputs(platform, specs)
    assert again.files_copied == 6
    assert again.files_skipped == 0
    assert first == data_objects(sink) == expected


class NoOutputs(Transform):
    """A broken transform: it declares no output."""

    spec = "no-outputs"
    suffixes = ()

    def apply(self, source, context, out):
        source.read()


def test_a_transform_that_declares_no_output_fails_its_units(tmp_path):
    """Not a file done with nothing written: nothing would show the data is gone."""
    with (
        xdm_platform(batches=1) as platform,
        extractor(platform, tmp_path, NoOutputs()) as ex,
    ):
        report = ex.run(DATASET, START, END)
    assert not report.ok
    assert report.files_copied == 0
    assert report.files_skipped == 0
    assert [error for _, error in report.failures] == [
        "TransformError: a transform must declare at least one output"
    ]
