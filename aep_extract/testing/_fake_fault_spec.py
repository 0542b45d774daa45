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
    "per_second": "per_second",
    "change": "change",
    "status": "status",
    "host": "host",
    "style": "style",
    "location": "location",
    "encoding": "encoding",
    "delta": "delta",
    "extra": "extra",
    "mode": "mode",
    "max": "max_faults",
}
_NUMBERS = frozenset({"retry_after", "delay", "per_second"})
_WORDS = frozenset({"change", "style", "encoding", "mode"})
_TEXTS = frozenset({"host", "location"})
_LOWEST = {"after_bytes": 0, "max_faults": 1}
# A piece after "@" or ":" that starts a modifier; any other piece continues the
# option before it, so that "host=127.0.0.1:9999" keeps its port.
_STARTS = {
    "@": re.compile(r"\s*\w+(?:\s*\+\s*\w+)*\s*\Z"),
    ":": re.compile(r"\s*\w+\s*="),
}


def parse_items(spec: str) -> tuple[list[FaultRule], dict[str, int]]:
    """The rules of a spec and its plan options (``seed``, ``max``).

    Raises:
        ValueError: an empty spec or a malformed item, named in the message.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty fault spec: expected items like '429=0.1,reset=0.05'")
    rules: list[FaultRule] = []
    options: dict[str, int] = {}
    for raw in _cut(spec, ","):
        item = raw.lstrip(",").strip()
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


def _cut(text: str, separators: str) -> list[str]:
    """``text`` cut before each of ``separators`` outside double quotes.

    Raises:
        ValueError: a double quote is not closed.
    """
    pieces, start, quoted = [], 0, False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in separators and not quoted:
            pieces.append(text[start:index])
            start = index
    if quoted:
        raise ValueError(f"unclosed double quote in {text!r}")
    return [*pieces, text[start:]]


def _split(item: str) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    name = name.strip().lower()
    if not equals or not name:
        raise ValueError("expected KIND=VALUE")
    if name not in FAULT_KINDS + _STATUS_KINDS + ("seed", "max"):
        kinds = ", ".join(FAULT_KINDS + _STATUS_KINDS)
        raise ValueError(f"unknown fault kind {name!r} (expected one of {kinds})")
    return name, value.strip()


def _modifiers(text: str) -> list[str]:
    """The modifiers of ``text`` (each starting with ``@`` or ``:``); a piece that
    starts none continues the one before."""
    pieces: list[str] = []
    for piece in _cut(text, "@:")[1:]:
        if (
            pieces
            and not _STARTS[piece[0]].match(piece[1:])
            and (piece[0] == ":" or pieces[-1][0] == ":")
        ):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces


def _rule(name: str, text: str) -> FaultRule:
    head = _cut(text, "@:")[0].strip()
    fields: dict[str, Any] = {}
    kind = "5xx" if name in _STATUS_KINDS else name
    if name in _STATUS_KINDS:
        fields["status"] = int(name)
    if kind == "rate":
        fields["per_second"] = _number(head, "requests per second")
    elif kind == "bandwidth":
        fields["per_second"] = _number(head, "bytes per second")
    elif kind == "cut":
        fields["after_bytes"] = _integer(head, "bytes", low=0)
    else:
        fields["probability"] = _number(head, "probability")
    for piece in _modifiers(text):
        if piece[0] == "@":
            if "routes" in fields:
                raise ValueError("routes given twice")
            fields["routes"] = piece[1:].strip()
        else:
            option, value = _option(piece[1:])
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
    if len(value) > 1 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if '"' in value:
        raise ValueError(f"option {name!r}: a double quote only encloses a value")
    field = _OPTION_FIELDS[name]
    if field == "retry_after" and value.lower() == "none":
        return field, None
    if field in _NUMBERS:
        return field, _number(value, name)
    if field in _WORDS:
        return field, value.lower()
    if field in _TEXTS:
        return field, value
    return field, _integer(value, name, low=_LOWEST.get(field))


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


def _integer(text: str, what: str, *, low: Optional[int]) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a whole number") from None
    if low is not None and value < low:
        raise ValueError(f"{what} must be at least {low}, got {value}")
    return value


def _value(text: str) -> str:
    """``text`` as an option value: in double quotes when it holds a comma or would
    read back as more than one modifier."""
    if "," in text or len(_modifiers(f":x={text}")) > 1:
        return f'"{text}"'
    return text


def _exact(number: float) -> str:
    """``number`` written so that it reads back equal (a whole one without ``.0``)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


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
    elif rule.kind == "bandwidth":
        assert rule.per_second is not None
        item = f"bandwidth={_exact(rule.per_second)}"
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
    for name, field in _OPTION_FIELDS.items():
        value = getattr(rule, field)
        if value is None or (rule.kind, field) in (
            ("rate", "per_second"),
            ("bandwidth", "per_second"),
            ("cut", "after_bytes"),
            ("5xx", "status"),
        ):
            continue  # absent, or already in the item's head
        if isinstance(value, float):
            text = f"{value:g}"
        elif field in _TEXTS:
            text = _value(value)
        else:
            text = str(value)
        item += f":{name}={text}"
    return item


def format_plan(plan: FaultPlan) -> str:
    """A plan as a spec that :meth:`FaultPlan.parse` reads back to an equal plan."""
    items = [f"seed={plan.seed}", *(format_rule(rule) for rule in plan.rules)]
    if plan.max_faults is not None:
        items.append(f"max={plan.max_faults}")
    return ",".join(items)
