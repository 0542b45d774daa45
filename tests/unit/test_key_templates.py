"""Custom key templates: placeholders, validation, unsafe keys, collisions, and a
run into a LocalSink."""

from __future__ import annotations

import pytest

from aep_extract import (
    Batch,
    ConfigError,
    Extractor,
    ExtractorConfig,
    FileRef,
    KeyCollisionError,
    KeyLayout,
    LocalSink,
    MemoryCheckpointStore,
    SerialScheduler,
    UnsafeKeyError,
    WorkUnit,
)
from aep_extract.testing import MemoryAepSource
from aep_extract.transforms import output_key

CREATED_MS = 1_718_000_000_000  # 2024-06-10T06:13:20Z
UNIT = WorkUnit(dataset_id="ds1", batch_id="b1", batch_created_ms=CREATED_MS)
FILE = FileRef(dataset_file_id="f1", name="part-0.parquet", length=3)


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("{dataset_id}/{batch_id}/{name}", "ds1/b1/part-0.parquet"),
        ("{date}/{dataset_file_id}/{name}", "2024-06-10/f1/part-0.parquet"),
        ("raw/{batch_id}-{name}", "raw/b1-part-0.parquet"),
        ("x/{{literal}}/{batch_id}/{name}", "x/{literal}/b1/part-0.parquet"),
        ("{batch_id}/{name:>16}", "b1/  part-0.parquet"),
    ],
)
def test_every_placeholder_of_a_file_template(template, key):
    assert KeyLayout(file_template=template).file_key(UNIT, FILE) == key


def test_every_placeholder_of_a_manifest_template():
    layout = KeyLayout(manifest_template="m/{dataset_id}/{date}/{batch_id}.json")
    assert layout.manifest_key(UNIT) == "m/ds1/2024-06-10/b1.json"
    split = WorkUnit(
        dataset_id="ds1", batch_id="b1", batch_created_ms=CREATED_MS, last_offset=9
    )
    assert layout.manifest_key(split) == "m/ds1/2024-06-10/b1.0-9.json"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{batch_id}/{nope}", "unknown placeholder {nope}"),
        ("{batch_id}/{}", "unknown placeholder {}"),
        ("{batch_id}/{0}", "unknown placeholder {0}"),
        ("{batch_id}/{name.__class__}", r"unknown placeholder \{name.__class__\}"),
        ("{batch_id}/{name[0]}", r"unknown placeholder \{name\[0\]\}"),
        ("{batch_id}/{name", "expected '}'"),
        ("{batch_id}/name}", "Single '}'"),
        ("{batch_id}/{name:%Y}", "Invalid format specifier"),
        ("{dataset_id}/{name}", "no {batch_id} or {dataset_file_id}"),
        ("{batch_id}/{dataset_file_id}", "no {name}"),
        ("/abs/{batch_id}/{name}", "absolute"),
        ("../{batch_id}/{name}", "'..' segment"),
        ("a//{batch_id}/{name}", "empty"),
        ("a\\{batch_id}/{name}", "backslash"),
        (42, "must be a string"),
    ],
)
def test_an_invalid_file_template_is_refused_at_construction(template, reason):
    with pytest.raises(ConfigError, match=reason):
        KeyLayout(file_template=template)
    with pytest.raises(ConfigError, match=reason):
        ExtractorConfig(key_template=template)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{dataset_id}/_manifest.json", "no {batch_id}"),
        ("{batch_id}/{name}.json", "unknown placeholder {name}"),
        ("{batch_id}/{dataset_file_id}.json", "unknown placeholder {dataset_file_id}"),
        ("/{batch_id}.json", "absolute"),
    ],
)
def test_an_invalid_manifest_template_is_refused_at_construction(template, reason):
    with pytest.raises(ConfigError, match=reason):
        KeyLayout(manifest_template=template)
    with pytest.raises(ConfigError, match=reason):
        ExtractorConfig(manifest_template=template)


@pytest.mark.parametrize(
    "name", ["..", "../escape", "/etc/passwd", "a\\b", "a/../../b", "a\x00b"]
)
def test_names_that_make_an_unsafe_key_are_refused(name):
    layout = KeyLayout(file_template="{batch_id}-{name}")
    with pytest.raises(UnsafeKeyError):
        layout.file_key(UNIT, FileRef(dataset_file_id="f1", name=name, length=1))


def test_ids_that_make_an_unsafe_key_are_refused():
    layout = KeyLayout(file_template="{dataset_id}/{dataset_file_id}{name}")
    for dataset, file_id in (("..", "f1"), ("ds1", "../f"), ("a/b", "f1")):
        unit = WorkUnit(dataset_id=dataset, batch_id="b1", batch_created_ms=0)
        with pytest.raises(UnsafeKeyError):
            layout.file_key(unit, FileRef(dataset_file_id=file_id, name="n", length=1))


def test_files_that_share_a_key_under_a_template_collide():
    layout = KeyLayout(file_template="{batch_id}/{name}")  # no dataSetFileId
    files = [
        FileRef(dataset_file_id="f1", name="part-0.parquet", length=1),
        FileRef(dataset_file_id="f2", name="part-0.parquet", length=1),
    ]
    with pytest.raises(KeyCollisionError) as caught:
        layout.file_keys(UNIT, files)
    assert caught.value.keys == ("b1/part-0.parquet", "b1/part-0.parquet")


def test_a_file_on_the_manifest_key_collides():
    layout = KeyLayout(
        file_template="{batch_id}/{name}", manifest_template="{batch_id}/m.json"
    )
    files = [FileRef(dataset_file_id="f1", name="m.json", length=1)]
    with pytest.raises(KeyCollisionError, match="the manifest of unit b1"):
        layout.file_keys(UNIT, files)


def test_files_whose_transform_outputs_share_a_key_collide():
    """Distinct source keys, one output key: ``part-0.parquet`` and
    ``part-0.snappy.parquet`` both become ``part-0.jsonl.gz``."""
    files = [
        FileRef(dataset_file_id="f1", name="part-0.parquet", length=1),
        FileRef(dataset_file_id="f1", name="part-0.snappy.parquet", length=1),
    ]
    layout = KeyLayout()
    assert len(set(layout.file_keys(UNIT, files))) == 2
    with pytest.raises(KeyCollisionError) as caught:
        layout.file_keys(
            UNIT, files, outputs=lambda key: [output_key(key, ".jsonl.gz")]
        )
    assert caught.value.keys[0] == caught.value.keys[1]
    assert caught.value.keys[0].endswith("/f1/part-0.jsonl.gz")


def test_a_transform_output_on_the_manifest_key_collides():
    layout = KeyLayout(
        file_template="{batch_id}/{name}", manifest_template="{batch_id}/m.json"
    )
    files = [FileRef(dataset_file_id="f1", name="m.parquet", length=1)]
    with pytest.raises(KeyCollisionError, match="the manifest of unit b1"):
        layout.file_keys(UNIT, files, outputs=lambda key: [output_key(key, ".json")])


def batch(batch_id: str, created_ms: int) -> Batch:
    return Batch(
        batch_id=batch_id, dataset_id="ds1", status="success", created_ms=created_ms
    )


def test_a_custom_template_end_to_end_into_a_local_sink(tmp_path):
    batches = {
        batch("b1", CREATED_MS): {
            ("f1", "part-0.parquet"): b"one",
            ("f2", "dir/part-1.parquet"): b"two",
        },
        batch("b2", CREATED_MS + 1): {("f3", "part-0.parquet"): b"three"},
    }
    config = ExtractorConfig(
        key_template="exports/{date}/{batch_id}/{dataset_file_id}-{name}",
        manifest_template="manifests/{dataset_id}/{batch_id}.json",
    )
    sink = LocalSink(tmp_path)
    with Extractor(
        MemoryAepSource("ds1", batches),
        store=MemoryCheckpointStore(),
        sink=sink,
        scheduler=SerialScheduler(),
        config=config,
        progress=False,
    ) as extractor:
        report = extractor.run("ds1", "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z")
    assert report.ok, str(report)
    files = {
        path.relative_to(tmp_path).as_posix(): path.read_bytes()
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    manifests = {key for key in files if key.startswith("manifests/")}
    assert manifests == {"manifests/ds1/b1.json", "manifests/ds1/b2.json"}
    assert {k: v for k, v in files.items() if k not in manifests} == {
        "exports/2024-06-10/b1/f1-part-0.parquet": b"one",
        "exports/2024-06-10/b1/f2-dir/part-1.parquet": b"two",
        "exports/2024-06-10/b2/f3-part-0.parquet": b"three",
    }
