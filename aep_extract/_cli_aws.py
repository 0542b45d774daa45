"""``aep-extract aws ...``: commands of the AWS pipeline. :mod:`aep_extract.cli` adds
the group to its parser and command table; a new subcommand is one more entry of
``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from typing import Callable

import attrs

from ._entry import EXIT_OK
from .errors import ConfigError

AWS_HELP = "the AWS pipeline (Step Functions over Glue or ECS workers): deploy it"
TEMPLATE_HELP = "print the CloudFormation template of the AWS pipeline (or write it)"
PACKAGE_HELP = (
    "build lambda.zip for the Lambda runtime and upload it with glue_job.py (and the "
    "wheel of a local project); print the deploy command"
)
DEPLOY_HELP = (
    "package (or take packaged artifacts) and create or update the pipeline's stack "
    "from the template through a change set, as aws cloudformation deploy does; "
    "print its outputs and the secret to fill in"
)


@attrs.frozen
class Subcommand:
    """One ``aep-extract aws`` subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_aws(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``aws``."""
    commands = parser.add_subparsers(
        dest="aws_command", metavar="COMMAND", required=True, parser_class=type(parser)
    )
    for subcommand in SUBCOMMANDS:
        sub = commands.add_parser(
            subcommand.name, help=subcommand.help, description=subcommand.help
        )
        subcommand.add_arguments(sub)
        sub.set_defaults(aws_run=subcommand.run)


def cmd_aws(args: argparse.Namespace) -> int:
    """Run the ``aws`` subcommand that ``args`` names."""
    run: Callable[[argparse.Namespace], int] = args.aws_run
    return run(args)


def _add_template(parser: argparse.ArgumentParser) -> None:
    from .aws.template import template_parameters

    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write the template to FILE instead of printing it",
    )
    lines = [
        "template parameters (aws cloudformation deploy --parameter-overrides "
        "NAME=VALUE ...):"
    ]
    for parameter in template_parameters():
        if parameter.default is None:
            default = "required"
        else:
            default = f"default: {parameter.default or 'empty'}"
        lines.append(f"  {parameter.name} ({default})")
        text = parameter.description
        if parameter.allowed:
            text += f"; one of: {', '.join(parameter.allowed)}"
        indent = " " * 6
        lines.append(
            textwrap.fill(
                text,
                width=79,
                initial_indent=indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
        )
    parser.epilog = "\n".join(lines)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _cmd_template(args: argparse.Namespace) -> int:
    from .aws.template import template_text

    text = template_text()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.output}: {exc.strerror}") from exc
    return EXIT_OK


def _add_package(parser: argparse.ArgumentParser) -> None:
    from .aws.package import DEFAULT_PREFIX, default_requirement

    parser.add_argument(
        "--bucket", required=True, help="the artifact bucket (it must exist)"
    )
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"key prefix in the bucket (default {DEFAULT_PREFIX}); the artifacts go "
        "to PREFIX/DIGEST/, DIGEST naming the build: CloudFormation updates the "
        "functions only when their code's key changes",
    )
    parser.add_argument(
        "--requirement",
        metavar="R",
        help=f"what to package: a pip requirement (default {default_requirement()}), "
        "a project directory or a wheel; a local one is also uploaded for the Glue "
        "job. pip needs the package index",
    )


def _cmd_package(args: argparse.Namespace) -> int:
    from .aws.package import package

    uploaded = package(args.bucket, prefix=args.prefix, requirement=args.requirement)
    print(f"uploaded to s3://{uploaded.bucket}/{uploaded.prefix}:")
    for key in uploaded.keys:
        print(f"  {key.rsplit('/', 1)[-1]}")
    print(
        "deploy (write the template first: aep-extract aws template --output "
        "pipeline.yaml):"
    )
    print(f"  {uploaded.deploy_command()}")
    return EXIT_OK


def _add_deploy(parser: argparse.ArgumentParser) -> None:
    from .aws.package import DEFAULT_PREFIX, default_requirement

    parser.add_argument(
        "--stack-name", required=True, help="the stack to create or update"
    )
    parser.add_argument(
        "--artifact-bucket",
        required=True,
        metavar="BUCKET",
        help="the bucket of the artifacts (it must exist); the plan writes its shard "
        "lists there too",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--artifact-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"where to package to (default {DEFAULT_PREFIX}), as aws package --prefix",
    )
    where.add_argument(
        "--artifacts",
        metavar="PREFIX",
        help="skip packaging: deploy what aep-extract aws package uploaded under "
        "PREFIX of the bucket (the PREFIX/DIGEST/ it printed)",
    )
    parser.add_argument(
        "--requirement",
        metavar="R",
        help=f"what to package, as aws package --requirement (default "
        f"{default_requirement()}); with --artifacts, what the Glue job installs "
        "when no wheel was uploaded there",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter (repeat it; aws template --help lists them); "
        "DatasetIds is required on creation. On an update the others keep the "
        "stack's values",
    )
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once the change set runs, without waiting for the stack",
    )


def _cmd_deploy(args: argparse.Namespace) -> int:
    from .aws.deploy import SECRET_FILE, deploy, secret_file_text

    parameters: dict[str, str] = {}
    for text in args.parameter:
        name, equals, value = text.partition("=")
        if not equals or not name:
            raise ConfigError(f"--parameter {text!r}: expected NAME=VALUE")
        parameters[name] = value
    done = deploy(
        args.stack_name,
        artifact_bucket=args.artifact_bucket,
        artifact_prefix=args.artifact_prefix,
        requirement=args.requirement,
        packaged_prefix=args.artifacts,
        parameters=parameters,
        wait=args.wait,
    )
    artifacts = done.artifacts
    print(f"artifacts: s3://{artifacts.bucket}/{artifacts.prefix}")
    if not done.changed:
        print(f"stack {done.stack_name}: no changes ({done.status})")
    elif not args.wait:
        print(f"stack {done.stack_name}: {done.status}; follow it with:")
        kind = "create" if done.status.startswith("CREATE") else "update"
        command = ["aws", "cloudformation", "wait", f"stack-{kind}-complete"]
        print(f"  {shlex.join([*command, '--stack-name', done.stack_name])}")
        return EXIT_OK
    else:
        print(f"stack {done.stack_name}: {done.status}")
    width = max((len(key) for key in done.outputs), default=0)
    print("outputs:")
    for key, value in done.outputs.items():
        print(f"  {key.ljust(width)}  {value}")
    put_secret = done.put_secret_command()
    if put_secret is not None:
        print(
            "the one remaining step: put the AEP credentials into the secret "
            f"(once), from a file {SECRET_FILE} that you keep private:"
        )
        print(f"  {secret_file_text()}")
        print(f"  {put_secret}")
    machine = done.outputs.get("StateMachineArn")
    if machine:
        print("then start a run (or wait for the schedule):")
        command = ["aws", "stepfunctions", "start-execution", "--state-machine-arn"]
        print(f"  {shlex.join([*command, machine])}")
    return EXIT_OK


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("template", TEMPLATE_HELP, _add_template, _cmd_template),
    Subcommand("package", PACKAGE_HELP, _add_package, _cmd_package),
    Subcommand("deploy", DEPLOY_HELP, _add_deploy, _cmd_deploy),
)
