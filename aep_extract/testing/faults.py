"""Declarative fault injection for the fake platform: what goes wrong, where, how often.

A :class:`FaultPlan` is a seed and an ordered list of :class:`FaultRule` values. Give it
to :class:`~aep_extract.testing.FakeAepPlatform` (``faults=`` or
:meth:`~aep_extract.testing.FakeAepPlatform.set_faults`) and the platform misbehaves as
the rules say, on real HTTP::

    plan = FaultPlan(
        rules=[
            FaultRule("429", probability=0.1, retry_after=1),
            FaultRule("reset", probability=0.05, routes="download"),
            FaultRule("cut", after_bytes=1024 * 1024),
        ],
        seed=7,
    )
    plan = FaultPlan.parse("429=0.1:retry_after=1,reset=0.05@download,cut=1048576")

Whether a rule fires on a request is a pure function of the seed, the rule's position,
the request (method, path, query, ``Range``) and how many times that same request was
seen before, so a plan injects the same faults into the same requests whatever the
order in which concurrent clients send them (only ``max_faults`` and the ``rate``
limiter depend on timing).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from typing import Any, Optional, Union

import attrs

__all__ = [
    "FAULT_KINDS",
    "LISTING_CHANGES",
    "ROUTES",
    "SERVER_ERRORS",
    "FaultPlan",
    "FaultRule",
]

FAULT_KINDS = (
    "429",
    "5xx",
    "reset",
    "truncate",
    "slow",
    "token_expiry",
    "rate",
    "cut",
    "listing_change",
)
"""Every fault kind, in the order in which ``FakeAepPlatform.faults_served`` lists
them."""
ROUTES = ("token", "catalog", "listing", "download")
"""Route kinds a rule can be scoped to, in order the IMS token endpoint, Catalog calls,
Data Access listings and file downloads (Data Access calls with a ``path``)."""
SERVER_ERRORS = (500, 502, 503, 504)
"""Statuses a ``5xx`` rule answers with."""
LISTING_CHANGES = ("insert", "move")
"""How a ``listing_change`` rule changes the Catalog batch listing."""

_PLATFORM = ("catalog", "listing", "download")
_DEFAULT_ROUTES = {
    "token_expiry": _PLATFORM,
    "cut": ("download",),
    "listing_change": ("catalog",),
}
# Options (beyond probability, routes, match and max_faults) each kind accepts.
_OPTIONS = {
    "429": ("retry_after",),
    "5xx": ("status",),
    "reset": ("after_bytes",),
    "truncate": ("after_bytes",),
    "slow": ("delay",),
    "rate": ("per_second",),
    "cut": ("after_bytes",),
    "listing_change": ("change",),
}
_REQUIRED = {"rate": "per_second", "cut": "after_bytes"}


def _routes(value: Union[str, Iterable[str], None]) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    names = value.split("+") if isinstance(value, str) else list(value)
    unknown = [name for name in names if name not in ROUTES]
    if unknown or not names:
        raise ValueError(
            f"unknown route {', '.join(map(repr, unknown)) or '(none)'} "
            f"(expected one or more of {', '.join(ROUTES)})"
        )
    return tuple(route for route in ROUTES if route in names)


def _in(choices: tuple[Any, ...], what: str, *, optional: bool = True) -> Any:
    def check(_: Any, __: attrs.Attribute[Any], value: Any) -> None:
        if (value is not None or not optional) and value not in choices:
            expected = ", ".join(str(choice) for choice in choices)
            raise ValueError(f"unknown {what} {value!r} (expected one of {expected})")

    return check


def _at_least(
    low: float, what: str, *, above: bool = False, whole: bool = False
) -> Any:
    kinds = (int,) if whole else (int, float)

    def check(_: Any, __: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, kinds):
            number = "a whole number" if whole else "a number"
            raise ValueError(f"{what} must be {number}, got {value!r}")
        if not math.isfinite(value) or value < low or (above and value == low):
            bound = f"more than {low:g}" if above else f"at least {low:g}"
            raise ValueError(f"{what} must be {bound}, got {value!r}")

    return check


def _probability(_: Any, __: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"probability must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"probability must be between 0 and 1, got {value!r}")


@attrs.frozen
class FaultRule:
    """One kind of fault, where it applies and how often.

    Args:
        kind: one of :data:`~aep_extract.testing.faults.FAULT_KINDS`:

            - ``"429"``: answer 429 Too Many Requests, with a ``Retry-After`` header
              when ``retry_after`` is set;
            - ``"5xx"``: answer ``status`` (one of
              :data:`~aep_extract.testing.faults.SERVER_ERRORS`; None picks one per
              fault) with a problem-details body;
            - ``"reset"``: send the headers and ``after_bytes`` of the body (None:
              half), then reset the connection (TCP RST);
            - ``"truncate"``: the same, but end with a clean close, so the body is
              shorter than its ``Content-Length``;
            - ``"slow"``: send the body in 4 pieces with ``delay`` seconds (default
              0.05) between them;
            - ``"token_expiry"``: revoke every token, so this request and any other
              using a token issued before get 401;
            - ``"rate"``: allow ``per_second`` requests in any second, answer the
              others 429 with ``Retry-After`` (``probability`` must stay 1);
            - ``"cut"``: cut every body longer than ``after_bytes`` after that many
              bytes and close (Adobe's 60-second response limit);
            - ``"listing_change"``: on a Catalog batch listing page after the first,
              change the listing as if, since the previous page, a new batch had
              appeared at the front (``change="insert"``: entries repeat) or the
              first batch had moved to the end (``"move"``: an entry is skipped);
              None picks one per fault. The change stays for later pages of the
              same listing; a request with ``start=0`` begins a new listing.

        probability: chance in ``[0, 1]`` that the rule fires on a request it
            applies to.
        routes: route kinds (:data:`~aep_extract.testing.faults.ROUTES`) it
            applies to, as a sequence or a string like ``"catalog+listing"``; None
            for the kind's default: every route, but ``token_expiry`` (platform
            routes), ``cut`` (downloads) and ``listing_change`` (Catalog).
        match: a regular expression searched in the request path; None for any.
        max_faults: the most faults this rule serves; None for no limit.
        retry_after: ``429``: seconds for ``Retry-After``; None sends no header.
        status: ``5xx``: the status to answer.
        after_bytes: ``reset``, ``truncate``: body bytes sent first (at most the
            body's length minus one); ``cut``: the bytes after which bodies are cut.
        delay: ``slow``: seconds between pieces.
        per_second: ``rate``: requests allowed in any one second.
        change: ``listing_change``: ``"insert"`` or ``"move"``.

    Raises:
        ValueError: an unknown kind or route, a value out of range, a missing
            required option or an option that does not apply to the kind.
    """

    kind: str = attrs.field(validator=_in(FAULT_KINDS, "fault kind", optional=False))
    probability: float = attrs.field(default=1.0, kw_only=True, validator=_probability)
    routes: Optional[tuple[str, ...]] = attrs.field(
        default=None, kw_only=True, converter=_routes
    )
    match: Optional[str] = attrs.field(default=None, kw_only=True)
    max_faults: Optional[int] = attrs.field(
        default=None, kw_only=True, validator=_at_least(1, "max_faults", whole=True)
    )
    retry_after: Optional[float] = attrs.field(
        default=None, kw_only=True, validator=_at_least(0, "retry_after")
    )
    status: Optional[int] = attrs.field(
        default=None, kw_only=True, validator=_in(SERVER_ERRORS, "status")
    )
    after_bytes: Optional[int] = attrs.field(
        default=None, kw_only=True, validator=_at_least(0, "after_bytes", whole=True)
    )
    delay: Optional[float] = attrs.field(
        default=None, kw_only=True, validator=_at_least(0, "delay")
    )
    per_second: Optional[float] = attrs.field(
        default=None, kw_only=True, validator=_at_least(0, "per_second", above=True)
    )
    change: Optional[str] = attrs.field(
        default=None, kw_only=True, validator=_in(LISTING_CHANGES, "listing change")
    )

    def __attrs_post_init__(self) -> None:
        allowed = _OPTIONS.get(self.kind, ())
        for name in ("retry_after", "status", "after_bytes", "delay", "per_second"):
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(
                    f"option {name!r} does not apply to {self.kind} faults"
                )
        if self.change is not None and "change" not in allowed:
            raise ValueError(f"option 'change' does not apply to {self.kind} faults")
        required = _REQUIRED.get(self.kind)
        if required is not None and getattr(self, required) is None:
            raise ValueError(f"{self.kind} faults need {required!r}")
        if self.kind == "rate" and self.probability != 1.0:
            raise ValueError("rate faults take no probability (the limit decides)")
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(
                    f"invalid match pattern {self.match!r}: {exc}"
                ) from None
        if self.kind == "token_expiry" and "token" in self.scope:
            raise ValueError("token_expiry faults cannot apply to the token route")
        if self.kind == "listing_change" and self.scope != ("catalog",):
            raise ValueError("listing_change faults apply to the catalog route only")

    @property
    def scope(self) -> tuple[str, ...]:
        """The route kinds the rule applies to (``routes`` or the kind's default)."""
        if self.routes is not None:
            return self.routes
        return _DEFAULT_ROUTES.get(self.kind, ROUTES)

    def to_spec(self) -> str:
        """This rule as a :meth:`FaultPlan.parse` item.

        Raises:
            ValueError: the rule has no spec form (a ``match`` pattern, or a ``cut``
                with a probability below 1).
        """
        from ._fake_fault_spec import format_rule

        return format_rule(self)


def _rules(items: Iterable[FaultRule]) -> tuple[FaultRule, ...]:
    rules = tuple(items)
    for rule in rules:
        if not isinstance(rule, FaultRule):
            raise TypeError(f"not a FaultRule: {rule!r}")
    return rules


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Fault rules and the seed that decides which requests they hit.

    Rules are consulted in order: of those that answer in place of the platform
    (``429``, ``5xx``, ``rate``) the first that fires answers; of those that change
    how a body is sent (``reset``, ``truncate``, ``slow``, ``cut``) the first that
    fires applies. ``token_expiry`` and ``listing_change`` act besides them.

    Args:
        rules: the rules.
        seed: seed of every decision.
        max_faults: the most faults the whole plan serves; None for no limit.

    Raises:
        ValueError: ``max_faults`` below 1.
        TypeError: a rule that is not a :class:`FaultRule`.
    """

    rules: tuple[FaultRule, ...] = attrs.field(converter=_rules)
    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    max_faults: Optional[int] = attrs.field(
        default=None, validator=_at_least(1, "max_faults", whole=True)
    )

    @classmethod
    def parse(cls, spec: str, *, seed: int = 0) -> FaultPlan:
        """Read a compact spec, as ``aep-extract demo --faults`` takes.

        The spec is comma-separated items. ``KIND=VALUE`` adds a rule, where VALUE
        is the probability, but requests per second for ``rate`` and bytes for
        ``cut``; ``500``, ``502``, ``503`` and ``504`` are ``5xx`` rules with that
        status. After the value come, in any order, ``@ROUTE[+ROUTE...]`` to scope
        the rule and ``:NAME=VALUE`` options: ``retry_after`` (seconds, or ``none``),
        ``after`` (bytes), ``delay`` (seconds), ``change`` (``insert`` or ``move``),
        ``max`` (faults of this rule). ``seed=N`` and ``max=N`` set the plan's seed
        and ``max_faults``. For example::

            429=0.1,reset=0.05@download,5xx=0.05,truncate=0.05,rate=20,cut=1048576
            seed=3,429=0.2:retry_after=1@catalog+listing,slow=0.1:delay=0.2,max=50

        Args:
            spec: the spec.
            seed: the seed when the spec has no ``seed=`` item.

        Raises:
            ValueError: the spec is empty or an item is malformed; the message names
                the item.
        """
        from ._fake_fault_spec import parse_items

        rules, options = parse_items(spec)
        return cls(
            rules=rules,
            seed=options.get("seed", seed),
            max_faults=options.get("max"),
        )

    def to_spec(self) -> str:
        """The plan as a :meth:`parse` spec (rules with ``match`` cannot be written).

        Raises:
            ValueError: a rule has a ``match`` pattern.
        """
        from ._fake_fault_spec import format_plan

        return format_plan(self)

    def chance(self, index: int, key: str, occurrence: int, salt: str = "") -> float:
        """A number in ``[0, 1)`` fixed by the seed, rule ``index``, request ``key``,
        its ``occurrence`` and ``salt``: the plan's only source of randomness."""
        text = f"{self.seed}\x00{index}\x00{key}\x00{occurrence}\x00{salt}"
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0**64
