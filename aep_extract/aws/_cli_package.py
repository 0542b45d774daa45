"""``aep-extract aws package``: build the pipeline's artifacts and upload them.

:func:`add_package` adds the subcommand to the ``aws`` group's subparsers;
:func:`add_package_arguments` and :func:`cmd_package` are its arguments and its run.
"""

from __future__ import annotations

import argparse
from typing import Any

PACKAGE_HELP = (
    "build lambda.zip for the Lambda runtime and upload it with glue_job.py (and the "
    "wheel of a local project); print the deploy command"
)


def add_package(subparsers: Any) -> None:
    """Add ``package`` to the ``aws`` command group's subparsers."""
    parser = subparsers.add_parser(
        "package", help=PACKAGE_HELP, description=PACKAGE_HELP
    )
    add_package_arguments(parser)
    parser.set_defaults(aws_handler=cmd_package)


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aws package``."""
    from .package import DEFAULT_PREFIX, default_requirement

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


def cmd_package(args: argparse.Namespace) -> int:
    """Run ``aep-extract aws package``; returns the exit code."""
    from .package import package

    uploaded = package(args.bucket, prefix=args.prefix, requirement=args.requirement)
    print(f"uploaded to s3://{uploaded.bucket}/{uploaded.prefix}:")
    for key in uploaded.keys:
        print(f"  {key.rsplit('/', 1)[-1]}")
    print(
        "deploy (write the template first: aep-extract aws template --output "
        "pipeline.yaml):"
    )
    print(f"  {uploaded.deploy_command()}")
    return 0
