"""The epilogs of ``aep-extract --help``: examples, exit codes, environment."""

from __future__ import annotations

import argparse
from typing import Optional

from .config import DEFAULT_IMS_URL, DEFAULT_PLATFORM_URL, DEFAULT_SANDBOX

_EXIT_CODES = """\
exit codes:
  0    every unit Completed, Skipped or Waiting on AEP; the check passed
  1    some unit Failed or was left unfinished, or a check found a discrepancy
  2    usage or configuration error (one line on stderr, nothing written)
  130  interrupted (Ctrl-C); leases are given back"""

_EXIT_CODES_OF = {
    "status": """\
exit codes:
  0  every unit in scope is Completed, Skipped or Waiting (nothing to do now)
  1  some unit is Pending, InProgress or Failed, or no unit is recorded
     in scope (a mistyped dataset id, or a window without batches)
  2  usage error: a bad option, only one of --start and --end, or a time
     without a UTC offset""",
}

ENVIRONMENT = f"""\
environment:
  AEP_CLIENT_ID, AEP_CLIENT_SECRET, AEP_ORG_ID
                     OAuth server-to-server credentials (required)
  AEP_SANDBOX        sandbox name (default {DEFAULT_SANDBOX})
  AEP_SCOPES         OAuth scopes, comma-separated (default: the export scopes)
  AEP_PLATFORM_URL   Platform API (default {DEFAULT_PLATFORM_URL})
  AEP_IMS_URL        IMS token service (default {DEFAULT_IMS_URL})
  AEP_MAX_RPS        default of --max-rps
  AEP_MAX_IN_FLIGHT  default of --max-in-flight
  AWS_PROFILE, AWS_REGION, ...
                     boto3's usual settings, for s3:// and dynamodb://"""

_EXAMPLES: dict[Optional[str], str] = {
    None: """\
  aep-extract demo
  aep-extract run --dataset ID --start 2024-06-01T00:00:00Z \\
      --end 2024-06-02T00:00:00Z --store sqlite:///state.db --sink ./out
  aep-extract status --dataset ID --store sqlite:///state.db
  aep-extract verify --dataset ID --store sqlite:///state.db --sink ./out""",
    "run": """\
  # one window into a directory, state in a local SQLite file
  aep-extract run --dataset ID --start 2024-06-01T00:00:00Z \\
      --end 2024-06-02T00:00:00Z --store sqlite:///state.db --sink ./out
  # the daily job: continue where the last window ended, into S3
  aep-extract run --dataset ID --since-last --start 2024-06-01T00:00:00Z \\
      --store dynamodb://aep-extract --create-table --sink s3://BUCKET/aep
  # rerun the same command after a crash: it resumes where it stopped""",
    "plan": """\
  aep-extract plan --dataset ID --start 2024-06-01T00:00:00Z \\
      --end 2024-06-02T00:00:00Z --store sqlite:///state.db""",
    "status": """\
  aep-extract status --dataset ID --store sqlite:///state.db --units""",
    "verify": """\
  aep-extract verify --dataset ID --store sqlite:///state.db --sink ./out""",
    "demo": """\
  aep-extract demo --dir /tmp/aep-demo
  aep-extract demo --dir /tmp/aep-faults --faults '429=0.1,reset=0.05'""",
}

_READS_AEP = frozenset({"run", "plan", "verify", "failed"})
"""Commands that call AEP, and so read the ``AEP_*`` variables."""


class Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts; keeps the lines of an epilog as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def epilog(command: Optional[str] = None) -> str:
    """The text after a parser's options: examples, exit codes and, for a command
    that calls AEP (and the top level), the environment it reads."""
    parts = []
    examples = _EXAMPLES.get(command)
    if examples:
        parts.append("examples:\n" + examples)
    parts.append(_EXIT_CODES_OF.get(command or "", _EXIT_CODES))
    if command is None or command in _READS_AEP:
        parts.append(ENVIRONMENT)
    if command is None:
        parts.append('"aep-extract COMMAND --help" tells more of a command.')
    return "\n\n".join(parts)
