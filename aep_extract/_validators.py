"""attrs validators that raise :class:`~aep_extract.errors.ConfigError`.

attrs' own validators raise ``ValueError`` or ``TypeError``; a public class built with
an invalid value raises ``ConfigError`` instead (a ``ValueError`` too). Use this
module where ``attrs.validators`` would go: ``from . import _validators as v``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import attrs
from attrs import validators as _attrs

from .errors import ConfigError

__all__ = [
    "and_",
    "ge",
    "gt",
    "in_",
    "instance_of",
    "le",
    "lt",
    "min_len",
    "optional",
    "path_arg",
    "text_arg",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def config_errors(validator: Validator) -> Validator:
    """``validator``, raising ConfigError for the ValueError or TypeError it raises."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        try:
            validator(instance, attribute, value)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            # attrs names the field in its messages; a failed comparison does not.
            reason = str(exc)
            if repr(attribute.name) not in reason:
                reason = f"{attribute.name!r}: {reason}"
            raise ConfigError(reason) from None

    return check


def ge(bound: Any) -> Validator:
    """The value is at least ``bound``."""
    return config_errors(_attrs.ge(bound))


def gt(bound: Any) -> Validator:
    """The value is above ``bound``."""
    return config_errors(_attrs.gt(bound))


def le(bound: Any) -> Validator:
    """The value is at most ``bound``."""
    return config_errors(_attrs.le(bound))


def lt(bound: Any) -> Validator:
    """The value is below ``bound``."""
    return config_errors(_attrs.lt(bound))


def min_len(length: int) -> Validator:
    """The value has at least ``length`` items."""
    return config_errors(_attrs.min_len(length))


def instance_of(kind: Any) -> Validator:
    """The value is an instance of ``kind``."""
    return config_errors(_attrs.instance_of(kind))


def in_(options: Any) -> Validator:
    """The value is one of ``options``."""
    return config_errors(_attrs.in_(options))


def optional(validator: Validator) -> Validator:
    """None, or a value ``validator`` accepts."""
    return config_errors(_attrs.optional(validator))


def and_(*validators: Validator) -> Validator:
    """Every one of ``validators`` accepts the value."""
    return config_errors(_attrs.and_(*validators))


def text_arg(value: Any, what: str) -> str:
    """``value`` if it is a string, else ConfigError naming ``what``."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {type(value).__name__}")
    return value


def path_arg(value: Any, what: str, *, empty: bool = False) -> str:
    """``value`` as a filesystem path (a string or ``os.PathLike``), else
    ConfigError naming ``what``; an empty path only when ``empty``."""
    try:
        path = os.fspath(value)
    except TypeError:
        raise ConfigError(
            f"{what} must be a path, not {type(value).__name__}"
        ) from None
    if not isinstance(path, str) or (not path and not empty):
        raise ConfigError(f"{what} must be a non-empty path, not {value!r}")
    return path
