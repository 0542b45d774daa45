"""``aep-extract aws ...``: commands of the AWS pipeline. :mod:`aep_extract.cli` adds
the group to its parser and command table; a new subcommand is one more entry of
``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
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


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("template", TEMPLATE_HELP, _add_template, _cmd_template),
    Subcommand("package", PACKAGE_HELP, _add_package, _cmd_package),
)
