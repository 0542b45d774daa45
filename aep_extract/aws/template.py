"""The CloudFormation template of the AWS pipeline, and its parameters.

The template ships as package data (``aep_extract/aws/files/pipeline.yaml``).
:func:`template_parameters` reads its ``Parameters`` section with a small parser of
the few YAML forms that section uses (one ``Key: value`` per line; values plain,
quoted or flow lists), so the library needs no YAML package at run time.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Optional

import attrs

from ..errors import ConfigError

__all__ = [
    "TemplateParameter",
    "parse_parameters",
    "template_parameters",
    "template_text",
]

_SECTION = "Parameters:"
_NAME = re.compile(r"^  ([A-Za-z0-9]+):\s*$")
_KEY = re.compile(r"^    ([A-Za-z]+):(?:\s+(.*))?$")
_ITEM = re.compile(r"^      - (.*)$")
_FLOW_ITEM = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^,]+?)\s*(?:,|$)""")


@attrs.frozen(kw_only=True)
class TemplateParameter:
    """A parameter of the template, as ``aws cloudformation deploy`` takes it.

    Attributes:
        name: the parameter's name (``--parameter-overrides NAME=VALUE``).
        type: its CloudFormation type (``String``, ``Number``,
            ``CommaDelimitedList``).
        default: its default as text; None when the parameter is required.
        description: what it sets.
        allowed: the values it may take; empty when any value of its type may.
    """

    name: str
    type: str
    default: Optional[str] = None
    description: str = ""
    allowed: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """Whether a deployment must give the parameter a value."""
        return self.default is None


def template_text() -> str:
    """The CloudFormation template (YAML) of the AWS pipeline."""
    files = (
        resources.files("aep_extract.aws").joinpath("files").joinpath("pipeline.yaml")
    )
    return files.read_text(encoding="utf-8")


def template_parameters() -> list[TemplateParameter]:
    """The template's parameters, in the template's order."""
    return parse_parameters(template_text())


def parse_parameters(text: str) -> list[TemplateParameter]:
    """The ``Parameters`` section of ``text``.

    Raises:
        ConfigError: a line of the section is in a form this parser does not read
            (never for the shipped template: a test compares this parser with a
            full YAML parse).
    """
    lines = iter(enumerate(text.splitlines(), 1))
    for _, line in lines:
        if line.rstrip() == _SECTION:
            break
    else:
        raise ConfigError("the template has no Parameters section")
    found: list[dict[str, object]] = []
    block: Optional[list[str]] = None  # the list of a key whose items follow it
    for number, line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            break  # the next section
        name, entry, item = _NAME.match(line), _KEY.match(line), _ITEM.match(line)
        if name:
            found.append({"name": name.group(1)})
            block = None
        elif entry and found:
            value = entry.group(2)
            block = [] if value is None else None
            found[-1][entry.group(1)] = (
                _value(value, number) if block is None else block
            )
        elif item and block is not None:
            block.append(_scalar(item.group(1), number))
        else:
            raise ConfigError(f"template line {number}: cannot read {line.strip()!r}")
    return [_parameter(fields) for fields in found]


def _parameter(fields: dict[str, object]) -> TemplateParameter:
    allowed = fields.get("AllowedValues", [])
    default = fields.get("Default")
    return TemplateParameter(
        name=str(fields["name"]),
        type=str(fields["Type"]),
        default=None if default is None else str(default),
        description=str(fields.get("Description", "")),
        allowed=tuple(allowed) if isinstance(allowed, list) else (str(allowed),),
    )


def _value(text: str, number: int) -> object:
    """A value after ``Key:``: a flow list or a scalar."""
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ConfigError(f"template line {number}: unterminated list")
        inner = text[1:-1].strip()
        if not inner:
            return []
        return [_scalar(m.group(1), number) for m in _FLOW_ITEM.finditer(inner)]
    return _scalar(text, number)


def _scalar(text: str, number: int) -> str:
    """A plain, single-quoted or double-quoted scalar as text."""
    text = text.strip()
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise ConfigError(f"template line {number}: unterminated string")
        # YAML's double-quoted escapes are JSON's for the characters used here.
        value: str = json.loads(text)
        return value
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ConfigError(f"template line {number}: unterminated string")
        return text[1:-1].replace("''", "'")
    if " #" in text or text[:1] in "{&*!|>%@`":
        raise ConfigError(f"template line {number}: cannot read {text!r}")
    return text
