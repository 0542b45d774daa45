"""``aep-extract aws package``: build the pipeline's artifacts and upload them."""

from __future__ import annotations

import argparse
from typing import Any

PACKAGE_HELP = "build lambda.zip (and the wheel of a local project) and upload them"


def add_package(subparsers: Any) -> None:
    """Add ``package`` to the ``aws`` command group's subparsers."""
    from .package import DEFAULT_PREFIX, default_requirement

    parser = subparsers.add_parser(
        "package",
        help=PACKAGE_HELP,
        description=f"{PACKAGE_HELP}, with glue_job.py, to s3://BUCKET/PREFIX/DIGEST/ "
        "(DIGEST names the build: CloudFormation updates the functions only when "
        "their code's key changes); then print the deploy command. Needs pip and "
        "the package index.",
    )
    parser.add_argument("--bucket", required=True, help="the artifact bucket")
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"key prefix in the bucket (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--requirement",
        metavar="R",
        help=f"what to package: a pip requirement (default {default_requirement()}), "
        "a project directory or a wheel; a local one is also uploaded for the Glue "
        "job",
    )
    parser.set_defaults(aws_handler=cmd_package)


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
