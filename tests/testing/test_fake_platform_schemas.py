"""Every JSON response of the fake platform against Adobe's OpenAPI response schemas.

The specs mark almost nothing required and leave objects open, so a response missing a
field or with a misspelled one would pass them as written. These tests tighten the
schemas: every object with declared properties is closed (``additionalProperties:
false``, plus the few fields aep-api.md documents beyond the spec) and the fields a
client relies on are required. A negative test proves the tightening bites.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30Validator, validate

from aep_extract.testing import FakeAepPlatform

DS = FakeAepPlatform.DEMO_DATASET_ID
CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
SCHEMAS = "#/components/schemas/"

EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    # aep-api.md §2.3: Catalog returns these, the spec does not declare them.
    "batchResponse": {"id": {"type": "string"}, "sandboxId": {"type": "string"}},
    # Catalog returns it; the spec declares it only in datasetPatchRequestV2 (as here).
    "dataSetResponse": {
        "classification": {
            "type": "object",
            "properties": {
                "dataBehavior": {"type": "string"},
                "managedBy": {"type": "string", "enum": ["CUSTOMER", "SYSTEM"]},
            },
            "required": ["dataBehavior", "managedBy"],
            "additionalProperties": False,
        }
    },
    # The spec's example has it, its schema does not.
    "lastBatchesResponse": {"sandboxId": {"type": "string"}},
}
PLACEHOLDERS: dict[str, dict[str, Any]] = {
    # The spec's preview row lists sample columns (column1..3): a row is any columns.
    "row": {"type": "object", "additionalProperties": {"type": "string"}},
}
REQUIRED: dict[str, list[str]] = {
    "batchResponse": [
        "id",
        "imsOrg",
        "status",
        "created",
        "updated",
        "started",
        "createdClient",
        "createdUser",
        "updatedUser",
        "externalId",
        "version",
        "relatedObjects",
        "errors",
        "tags",
        "inputFormat",
    ],
    "relatedObjects": ["type", "id"],
    "errors": ["code", "description", "rows"],
    "dataSetResponse": [
        "name",
        "version",
        "imsOrg",
        "created",
        "updated",
        "viewId",
        "files",
        "schemaRef",
        "tags",
        "classification",  # aepp's getDataSets reads it without a default
    ],
    "lastBatchesResponse": [
        "lastBatchId",
        "lastBatchStatus",
        "imsOrg",
        "created",
        "updated",
    ],
    "preview": ["data"],
    "dataSetFiles": ["data", "_page"],
    "dataSetFiles.data.item": [
        "dataSetFileId",
        "dataSetViewId",
        "version",
        "created",
        "updated",
        "isValid",
        "_links",
    ],
    "dataSetFiles.data.item.links": ["self"],
    "dataSetFiles.data.item.links.self": ["href"],
    "dataSetFiles.page": ["limit", "count"],
    "dataSetFiles.links.next": ["href"],
    "files": ["data", "_page"],
    "files.data.item": ["name", "length", "_links"],
    "files.data.item.links": ["self"],
    "files.data.item.links.self": ["href"],
    "files.page": ["limit", "count"],
    "files.links.next": ["href"],
}


def _spec_dir() -> Path:
    here = Path(__file__).resolve()
    candidates = [
        here.parents[1] / "openapi",  # vendored copy in tests/openapi
        here.parents[2].parent / "shared" / "reference" / "openapi",
    ]
    if os.environ.get("AEP_OPENAPI_DIR"):
        candidates.append(Path(os.environ["AEP_OPENAPI_DIR"]))
    for candidate in candidates:
        if (candidate / "catalog.yaml").is_file() and (
            candidate / "data-access.yaml"
        ).is_file():
            return candidate
    pytest.fail(
        "Adobe's OpenAPI specs (catalog.yaml, data-access.yaml) not found in "
        f"{', '.join(str(c) for c in candidates)}; set AEP_OPENAPI_DIR to their folder"
    )


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    folder = _spec_dir()
    return {
        name: yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8"))
        for name in ("catalog", "data-access")
    }


def inline(
    node: Any,
    spec: dict[str, Any],
    *,
    strict: bool,
    required: bool,
    seen: tuple[str, ...] = (),
) -> Any:
    """Resolve ``#/components/schemas`` refs; ``strict`` closes and tightens objects."""
    if isinstance(node, list):
        return [
            inline(item, spec, strict=strict, required=required, seen=seen)
            for item in node
        ]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith(SCHEMAS), ref
        name = ref[len(SCHEMAS) :]
        assert name not in seen, f"recursive schema {name}"
        if strict and name in PLACEHOLDERS:
            return copy.deepcopy(PLACEHOLDERS[name])
        target = spec["components"]["schemas"][name]
        schema = inline(
            target, spec, strict=strict, required=required, seen=(*seen, name)
        )
        if strict and name in EXTRA_FIELDS:
            schema["properties"] = {**schema["properties"], **EXTRA_FIELDS[name]}
        if strict and required and name in REQUIRED:
            schema["required"] = REQUIRED[name]
        return schema
    result = {
        key: inline(value, spec, strict=strict, required=required, seen=seen)
        for key, value in node.items()
    }
    if strict and result.get("properties") and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


def response_schema(
    spec: dict[str, Any], path: str, *, strict: bool = True, required: bool = True
) -> dict[str, Any]:
    """The inlined 200 ``application/json`` schema of ``GET path``."""
    responses = spec["paths"][path]["get"]["responses"]
    ok = responses.get(200, responses.get("200"))
    schema = ok["content"]["application/json"]["schema"]
    return dict(inline(schema, spec, strict=strict, required=required))


def component(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """An inlined, tightened component schema."""
    return dict(inline({"$ref": SCHEMAS + name}, spec, strict=True, required=True))


def check(instance: Any, schema: dict[str, Any]) -> None:
    validate(instance, schema, cls=OAS30Validator)


@pytest.fixture(scope="module")
def platform() -> Iterator[FakeAepPlatform]:
    with FakeAepPlatform.generate() as fake:
        yield fake


def fetch(platform: FakeAepPlatform, path: str, **params: Any) -> Any:
    url = path if path.startswith("http") else platform.url + path
    response = requests.get(
        url, headers=platform.auth_headers(), params=params, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def listings(platform: FakeAepPlatform, path: str) -> list[Any]:
    """A Data Access listing as one page and paged by 1 (so ``_links.next`` shows)."""
    pages = [fetch(platform, path), fetch(platform, path, limit=1)]
    assert pages[0]["data"], path
    return pages


# -- Catalog -------------------------------------------------------------------------


def test_batches_list(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    body = fetch(platform, f"{CATALOG}/batches", limit=100)
    assert len(body) == len(platform.batches)
    check(body, response_schema(specs["catalog"], "/batches"))
    statuses = {obj["status"] for obj in body.values()}
    assert {"success", "failed", "loading", "aborted", "active"} <= statuses
    for key, obj in body.items():
        assert obj["id"] == key
        assert isinstance(obj["created"], int)
        if obj["status"] in ("success", "active"):
            assert obj["metrics"]["outputFileCount"] >= 1
            assert isinstance(obj["completed"], int)
        if obj["status"] == "failed":
            assert obj["errors"]


def test_batches_list_with_properties(
    platform: FakeAepPlatform, specs: dict[str, Any]
) -> None:
    body = fetch(platform, f"{CATALOG}/batches", properties="completed,metrics")
    check(body, response_schema(specs["catalog"], "/batches", required=False))
    loading = next(b for b in platform.batches if b.status == "loading")
    assert body[loading.batch_id] == {}
    assert all(set(obj) <= {"completed", "metrics"} for obj in body.values())


def test_one_batch(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["catalog"], "/batches/{BATCH_ID}")
    for batch in platform.batches:
        check(fetch(platform, f"{CATALOG}/batches/{batch.batch_id}"), schema)


def test_dataset(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["catalog"], "/dataSets/{DATASET_ID}")
    for dataset_id in platform.dataset_ids:
        body = fetch(platform, f"{CATALOG}/dataSets/{dataset_id}")
        check(body, schema)
        assert body[dataset_id]["lastBatchStatus"]
    check(
        fetch(platform, f"{CATALOG}/dataSets"),
        response_schema(specs["catalog"], "/dataSets"),
    )


def test_last_batches(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["catalog"], "/lastBatches")
    body = fetch(platform, f"{CATALOG}/lastBatches")
    assert set(body) == set(platform.dataset_ids)
    check(body, schema)
    check(fetch(platform, f"{CATALOG}/lastBatches", dataSetId=DS), schema)


# -- Data Access ---------------------------------------------------------------------


def test_batch_files(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["data-access"], "/batches/{batchId}/files")
    for batch in platform.expected_files(DS, 0, 2**62):
        path = f"{EXPORT}/batches/{batch[0].batch_id}/files"
        whole, paged = listings(platform, path)
        check(whole, schema)
        check(paged, schema)
        assert "_links" in paged or len(whole["data"]) == 1


def test_file_details_physical(
    platform: FakeAepPlatform, specs: dict[str, Any]
) -> None:
    spec = specs["data-access"]
    declared = response_schema(spec, "/files/{dataSetFileId}", strict=False)
    files_schema = component(spec, "files")
    leaves = {leaf for _, leaf, _ in platform.expected_files(DS, 0, 2**62)}
    for leaf in sorted(leaves):
        for body in listings(platform, f"{EXPORT}/files/{leaf}"):
            check(body, declared)
            check(body, files_schema)
            assert all(item["length"].isdigit() for item in body["data"])


def test_file_details_directory(
    platform: FakeAepPlatform, specs: dict[str, Any]
) -> None:
    spec = specs["data-access"]
    declared = response_schema(spec, "/files/{dataSetFileId}", strict=False)
    schema = component(spec, "dataSetFiles")
    directories = [
        node
        for batch in platform.batches
        for node in batch.all_dataset_files()
        if node.is_directory
    ]
    assert len(directories) >= 2  # a directory inside a directory
    for node in directories:
        for body in listings(platform, f"{EXPORT}/files/{node.dataset_file_id}"):
            check(body, declared)
            check(body, schema)


def test_failed_files(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["data-access"], "/batches/{batchId}/failed")
    failed = [b for b in platform.batches if b.failed_files]
    assert failed
    for batch in failed:
        for body in listings(platform, f"{EXPORT}/batches/{batch.batch_id}/failed"):
            check(body, schema)


def test_batch_meta(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    spec = specs["data-access"]
    declared = response_schema(spec, "/batches/{batchId}/meta", strict=False)
    files_schema = component(spec, "files")  # listed like failed and physical files
    for batch in platform.batches:
        for body in listings(platform, f"{EXPORT}/batches/{batch.batch_id}/meta"):
            check(body, declared)
            check(body, files_schema)


def test_dataset_preview(platform: FakeAepPlatform, specs: dict[str, Any]) -> None:
    schema = response_schema(specs["data-access"], "/datasets/{id}/preview")
    for dataset_id in platform.dataset_ids:
        body = fetch(platform, f"{EXPORT}/datasets/{dataset_id}/preview")
        assert body["data"]
        check(body, schema)


# -- the tightened schemas do catch mistakes -----------------------------------------


def _mutations(platform: FakeAepPlatform) -> Iterator[tuple[str, str, Any]]:
    batch = platform.batches_of(DS)[1]
    batches = fetch(platform, f"{CATALOG}/batches/{batch.batch_id}")
    obj = batches[batch.batch_id]
    yield "catalog", "/batches/{BATCH_ID}", {batch.batch_id: {**obj, "created": "1"}}
    yield "catalog", "/batches/{BATCH_ID}", {batch.batch_id: {**obj, "Status": "x"}}
    missing = {k: v for k, v in obj.items() if k != "id"}
    yield "catalog", "/batches/{BATCH_ID}", {batch.batch_id: missing}
    related = copy.deepcopy(obj)
    related["relatedObjects"] = [{"type": "dataset", "id": DS}]
    yield "catalog", "/batches/{BATCH_ID}", {batch.batch_id: related}
    files = fetch(platform, f"{EXPORT}/batches/{batch.batch_id}/files")
    numeric = copy.deepcopy(files)
    numeric["data"][0]["created"] = int(numeric["data"][0]["created"])
    yield "data-access", "/batches/{batchId}/files", numeric
    typo = copy.deepcopy(files)
    typo["data"][0]["dataSetFileID"] = typo["data"][0].pop("dataSetFileId")
    yield "data-access", "/batches/{batchId}/files", typo
    dataset = fetch(platform, f"{CATALOG}/dataSets/{DS}")[DS]
    del dataset["classification"]
    yield "catalog", "/dataSets/{DATASET_ID}", {DS: dataset}


def test_tightened_schemas_reject_mistakes(
    platform: FakeAepPlatform, specs: dict[str, Any]
) -> None:
    count = 0
    for spec_name, path, body in _mutations(platform):
        schema = response_schema(specs[spec_name], path)
        assert not OAS30Validator(schema).is_valid(body), (path, body)
        count += 1
    assert count == 7
