"""Suite-wide fixtures: the fake AEP platform (``fake_aep``, ``fake_aep_env``); and
the ``slow`` marker of the folders whose tests run servers and processes."""

from __future__ import annotations

import pytest

pytest_plugins = ["aep_extract.testing.pytest_plugin"]

SLOW_FOLDERS = ("tests/aws/", "tests/azure/", "tests/e2e/", "tests/docs/test_site.py")
"""Their tests start moto servers, Azurite, LocalStack, Step Functions Local, CLI
processes and crashes, or build the docs site: all ``slow`` but for :data:`QUICK`."""
QUICK = (
    # aws/_settings and aws/worker
    "tests/aws/pipeline/test_worker_args.py::test_argv_outside_glue",
    "tests/aws/pipeline/test_worker_args.py::test_options_default_to_the_environment",
    "tests/aws/pipeline/test_worker_args.py::test_bad_options_are_config_errors",
    "tests/aws/pipeline/test_worker_args.py::test_main_exits_2_on_a_bad_option",
    # aws/handlers
    "tests/aws/pipeline/test_pipeline_errors.py::test_other_errors_of_the_library",
    # aws/deploy
    "tests/aws/test_deploy_command.py::test_the_shipped_template_goes_inline",
    "tests/aws/test_deploy_command.py::test_unknown_parameters_fail_before_any_aws",
    # tables/glue, checkpoints/dynamodb and sinks/s3 on moto in-process
    "tests/aws/test_glue_catalog.py::test_a_run_registers_its_days_and_a_crash_is_"
    "repaired[in_process]",
    "tests/aws/test_dynamodb_store.py::test_items_carry_the_seed_attributes_with_their"
    "_types[in_process]",
    "tests/aws/test_dynamodb_store.py::test_two_workers_race_for_one_unit_and_exactly"
    "_one_wins[in_process]",
    "tests/aws/test_dynamodb_store.py::test_expired_lease_is_taken_over_in_the_table"
    "[in_process]",
    "tests/aws/test_s3_sink.py::test_large_object_goes_up_in_parts_with_checksums"
    "[in_process]",
    # the engine running a transform
    "tests/e2e/test_transforms_e2e.py::test_without_metadata_or_a_record_outputs_are_"
    "made_again",
    # sinks/azure without Azurite
    "tests/azure/test_azure_sink.py::test_parse_azure_url",
    "tests/azure/test_azure_sink.py::test_malformed_urls_are_configuration_errors",
)
"""Fast tests of :data:`SLOW_FOLDERS` that keep every module of aep_extract
exercised by ``pytest -m "not slow"``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW_FOLDERS) and not item.nodeid.startswith(QUICK):
            item.add_marker(pytest.mark.slow)
