"""``aep-extract aws template`` and the template's parameters as the library reads
them."""

from __future__ import annotations

from pathlib import Path

import pytest

import aep_extract.aws
from aep_extract import ConfigError, cli
from aep_extract.aws.template import (
    TemplateParameter,
    parse_parameters,
    template_parameters,
    template_text,
)

from .cfn import parsed_template

PACKAGED = Path(aep_extract.aws.__file__).parent / "files" / "pipeline.yaml"


def test_parameters_are_those_of_a_full_yaml_parse() -> None:
    expected = [
        TemplateParameter(
            name=name,
            type=fields["Type"],
            default=None if "Default" not in fields else str(fields["Default"]),
            description=fields.get("Description", ""),
            allowed=tuple(str(v) for v in fields.get("AllowedValues", [])),
        )
        for name, fields in parsed_template()["Parameters"].items()
    ]
    assert template_parameters() == expected


def test_the_designed_parameters_are_there() -> None:
    parameters = {p.name: p for p in template_parameters()}
    assert {
        "DatasetIds",
        "SecretArn",
        "TableName",
        "CreateBucket",
        "BucketName",
        "SinkPrefix",
        "ArtifactBucket",
        "ArtifactPrefix",
        "WorkerType",
        "GlueTimeoutMinutes",
        "GlueMaxCapacity",
        "PipRequirement",
        "ContainerImage",
        "Subnets",
        "SecurityGroups",
        "WorkersPerDataset",
        "ThreadsPerWorker",
        "MaxConcurrency",
        "ToleratedWorkerFailures",
        "AepRequestsPerSecond",
        "ScheduleExpression",
        "ScheduleEnabled",
        "SafetyLag",
        "FirstStart",
        "AlarmEmail",
        "StaleRunHours",
        "ThrottledThreshold",
    } <= set(parameters)
    assert [p.name for p in parameters.values() if p.required] == [
        "DatasetIds",
        "ArtifactBucket",
    ]
    assert parameters["WorkerType"].allowed == ("glue", "ecs")
    assert parameters["SecretArn"].default == ""
    assert all(p.description for p in parameters.values())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Resources: {}\n", "no Parameters section"),
        ("Parameters:\n  A:\n    Type: String\n    Description: >-\n", "line 4"),
        ("Parameters:\n  A:\n    Type: String\n    Default: 'open\n", "line 4"),
        ("Parameters:\n  A:\n    Type: [String\n", "line 3"),
        ("Parameters:\n    Type: String\n", "line 2"),
    ],
)
def test_the_parser_refuses_what_it_cannot_read(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_parameters(text)


def test_the_parser_reads_each_form_it_promises() -> None:
    text = (
        "Parameters:\n"
        "  # a comment\n"
        "  A:\n"
        "    Type: Number\n"
        "    Default: 3\n"
        "    AllowedValues: [1, '3', \"5\"]\n"
        '    Description: "quoted: \\"text\\""\n'
        "  B:\n"
        "    Type: String\n"
        "    AllowedValues:\n"
        "      - x\n"
        "      - 'it''s'\n"
        "Resources: {}\n"
    )
    assert parse_parameters(text) == [
        TemplateParameter(
            name="A",
            type="Number",
            default="3",
            description='quoted: "text"',
            allowed=("1", "3", "5"),
        ),
        TemplateParameter(name="B", type="String", allowed=("x", "it's")),
    ]


def test_template_prints_the_packaged_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["aws", "template"]) == 0
    printed = capsys.readouterr().out
    assert printed == PACKAGED.read_text(encoding="utf-8") == template_text()


def test_template_writes_the_file(tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    assert cli.main(["aws", "template", "--output", str(output)]) == 0
    assert output.read_bytes() == PACKAGED.read_bytes()


def test_template_refuses_an_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing" / "pipeline.yaml"
    assert cli.main(["aws", "template", "--output", str(output)]) == 2
    assert f"cannot write {output}" in capsys.readouterr().err
    assert not output.parent.exists()


def test_template_help_lists_every_parameter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["aws", "template", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # unwrapped
    for parameter in template_parameters():
        default = (
            "required"
            if parameter.default is None
            else f"default: {parameter.default or 'empty'}"
        )
        assert f"{parameter.name} ({default})" in shown
        assert " ".join(parameter.description.split()) in shown
    assert "one of: glue, ecs" in shown


def test_aws_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["aws"]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
