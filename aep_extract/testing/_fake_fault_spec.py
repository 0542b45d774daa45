"""The compact fault spec of ``aep-extract demo --faults``: parsing and formatting."""

from __future__ import annotations

import re
from typing import Any, Optional

from .faults import _DEFAULT_ROUTES, FAULT_KINDS, ROUTES, FaultPlan, FaultRule

_STATUS_KINDS = ("500", "502", "503", "504")
_OPTION_FIELDS = {
    "retry_after": "retry_after",
    "after": "after_bytes",
    "delay": "delay",
    "change": "change",
    "max": "max_faults",
}
_MODIFIER = re.compile(r"([@:])([^@:]*)")


def parse_items(spec: str) -> tuple[list[FaultRule], dict[str, int]]:
    """The rules of a spec and its plan options (``seed``, ``max``).

    Raises:
        ValueError: an empty spec or a malformed item, named in the message.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty fault spec: expected items like '429=0.1,reset=0.05'")
    rules: list[FaultRule] = []
    options: dict[str, int] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty item in fault spec {spec!r}")
        try:
            name, value = _split(item)
            if name in ("seed", "max"):
                if name in options:
                    raise ValueError(f"{name!r} given twice")
                options[name] = _integer(value, name, low=0 if name == "seed" else 1)
            else:
                rules.append(_rule(name, value))
        except ValueError as exc:
            raise ValueError(f"fault spec item {item!r}: {exc}") from None
    if not rules:
        raise ValueError(f"fault spec {spec!r} has no fault, only options")
    return rules, options


def _split(item: str) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    name = name.strip().lower()
    if not equals or not name:
        raise ValueError("expected KIND=VALUE")
    if name not in FAULT_KINDS + _STATUS_KINDS + ("seed", "max"):
        kinds = ", ".join(FAULT_KINDS + _STATUS_KINDS)
        raise ValueError(f"unknown fault kind {name!r} (expected one of {kinds})")
    return name, value.strip()


def _rule(name: str, text: str) -> FaultRule:
    cut = min((i for i in (text.find("@"), text.find(":")) if i >= 0), default=None)
    head, modifiers = (text, "") if cut is None else (text[:cut], text[cut:])
    head = head.strip()
    fields: dict[str, Any] = {}
    kind = "5xx" if name in _STATUS_KINDS else name
    if name in _STATUS_KINDS:
        fields["status"] = int(name)
    if kind == "rate":
        fields["per_second"] = _number(head, "requests per second")
    elif kind == "cut":
        fields["after_bytes"] = _integer(head, "bytes", low=0)
    else:
        fields["probability"] = _number(head, "probability")
    for sign, body in (m.groups() for m in _MODIFIER.finditer(modifiers)):
        if sign == "@":
            if "routes" in fields:
                raise ValueError("routes given twice")
            fields["routes"] = body.strip()
        else:
            option, value = _option(body)
            if option in fields:
                raise ValueError(f"option {option!r} given twice")
            fields[option] = value
    return FaultRule(kind, **fields)


def _option(body: str) -> tuple[str, Any]:
    name, equals, value = body.partition("=")
    name, value = name.strip().lower(), value.strip()
    if not equals or name not in _OPTION_FIELDS:
        options = ", ".join(_OPTION_FIELDS)
        raise ValueError(
            f"unknown option {body!r} (expected NAME=VALUE, NAME one of {options})"
        )
    field = _OPTION_FIELDS[name]
    if field == "retry_after" and value.lower() == "none":
        return field, None
    if field in ("retry_after", "delay"):
        return field, _number(value, name)
    if field == "change":
        return field, value.lower()
    return field, _integer(value, name, low=1 if field == "max_faults" else 0)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


def _integer(text: str, what: str, *, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a whole number") from None
    if value < low:
        raise ValueError(f"{what} must be at least {low}, got {value}")
    return value


def format_rule(rule: FaultRule) -> str:
    """A rule as a spec item.

    Raises:
        ValueError: the rule has a ``match`` pattern, or is a ``cut`` with a
            probability below 1.
    """
    if rule.match is not None:
        raise ValueError("a rule with a match pattern has no spec form")
    if rule.kind == "rate":
        item = f"rate={rule.per_second:g}"
    elif rule.kind == "cut":
        if rule.probability != 1.0:
            raise ValueError("a cut rule with a probability below 1 has no spec form")
        item = f"cut={rule.after_bytes}"
    elif rule.kind == "5xx" and rule.status is not None:
        item = f"{rule.status}={rule.probability:g}"
    else:
        item = f"{rule.kind}={rule.probability:g}"
    default = _DEFAULT_ROUTES.get(rule.kind, ROUTES)
    if rule.routes is not None and rule.routes != default:
        item += "@" + "+".join(rule.routes)
    values: dict[str, Optional[object]] = {
        "retry_after": rule.retry_after,
        "after": rule.after_bytes if rule.kind != "cut" else None,
        "delay": rule.delay,
        "change": rule.change,
        "max": rule.max_faults,
    }
    for name, value in values.items():
        if value is not None:
            text = f"{value:g}" if isinstance(value, float) else str(value)
            item += f":{name}={text}"
    return item


def format_plan(plan: FaultPlan) -> str:
    """A plan as a spec that :meth:`FaultPlan.parse` reads back to an equal plan."""
    items = [f"seed={plan.seed}", *(format_rule(rule) for rule in plan.rules)]
    if plan.max_faults is not None:
        items.append(f"max={plan.max_faults}")
    return ",".join(items)
