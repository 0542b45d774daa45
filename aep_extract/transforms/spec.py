"""Transforms by spec: ``NAME[:key=value;key=value]``, looked up in the registry.

Values run to the next ``;`` outside quotes (``'...'`` or ``"..."``, with ``\\``
escaping the next character), so a filter's expression may hold ``=``, ``,`` and
quoted ``;``. Several specs compose in order (:meth:`Transform.then
<aep_extract.transforms.Transform.then>`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Union

import attrs

from .. import registry
from .._validators import text_arg
from ..errors import ConfigError
from .base import Transform

_OPTION = re.compile(r"[a-z_][a-z0-9_]*")


@attrs.frozen
class TransformSpec:
    """A parsed ``NAME[:OPTIONS]``.

    Attributes:
        name: the transform's registered name, lower case.
        options: each ``key=value``, in the order given.
    """

    name: str
    options: Mapping[str, str] = attrs.field(factory=dict)


def parse_spec(text: str) -> TransformSpec:
    """Parse ``NAME[:key=value;...]``.

    Raises:
        ConfigError: not of that form (an empty name or option, an option without
            ``=``, one given twice, an unclosed quote).
    """
    name, colon, rest = text_arg(text, "transform").partition(":")
    name = name.strip().lower()
    if not registry.TRANSFORM_NAME.fullmatch(name):
        raise ConfigError(f"transform {text!r}: expected NAME[:key=value;...]")
    options: dict[str, str] = {}
    if colon:
        for part in _split(rest, text):
            key, equals, value = part.partition("=")
            key = key.strip().lower()
            if not equals or not _OPTION.fullmatch(key):
                raise ConfigError(
                    f"transform {text!r}: option {part.strip()!r} is not key=value"
                )
            if key in options:
                raise ConfigError(f"transform {text!r}: option {key!r} given twice")
            options[key] = value.strip()
    return TransformSpec(name, options)


def _split(options: str, text: str) -> list[str]:
    """``options`` cut at each ``;`` outside quotes."""
    parts: list[str] = []
    start, quote, escaped = 0, "", False
    for index, char in enumerate(options):
        if escaped:
            escaped = False
        elif quote:
            escaped = char == "\\"
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";":
            parts.append(options[start:index])
            start = index + 1
    if quote:
        raise ConfigError(f"transform {text!r}: unclosed {quote}")
    parts.append(options[start:])
    if any(not part.strip() for part in parts):
        raise ConfigError(f"transform {text!r}: an empty option")
    return parts


def transform_class(name: str) -> type[Transform]:
    """The class registered as transform ``name``, imported.

    Raises:
        ConfigError: no transform has that name, or it cannot be imported (a
            missing extra is named: ``pip install 'aep-extract[parquet]'``).
    """
    known = {backend.scheme: backend for backend in registry.backends("transform")}
    backend = known.get(name.lower())
    if backend is None:
        raise ConfigError(
            f"unknown transform {name!r}; expected one of: "
            + ", ".join(form for b in known.values() for form in b.forms)
        )
    loaded = backend.load()
    if not issubclass(loaded, Transform):
        raise ConfigError(
            f"transform {backend.scheme}: {backend.target_name} is not a Transform"
        )
    return loaded


def open_transform(specs: Union[str, Sequence[str]]) -> Transform:
    """Build the transform that specs name; several compose in order.

    ``open_transform(["project:columns=a,b.c", "jsonl"])`` keeps two columns and
    writes JSON Lines (``--transform`` given twice on the command line).

    Args:
        specs: one ``NAME[:key=value;...]`` or several.

    Raises:
        ConfigError: a malformed spec, an unknown name or option, a bad value, a
            missing extra, or transforms that do not compose.
    """
    texts = [specs] if isinstance(specs, str) else list(specs)
    if not texts:
        raise ConfigError("no transform given")
    transforms = [
        transform_class(spec.name).from_options(spec.options)
        for spec in map(parse_spec, texts)
    ]
    return functools.reduce(lambda first, second: first.then(second), transforms)
