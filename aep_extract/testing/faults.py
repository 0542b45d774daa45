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
    "ENCODINGS",
    "ENDLESS_MODES",
    "FAULT_KINDS",
    "LINK_STYLES",
    "LISTING_CHANGES",
    "REDIRECTS",
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
    "foreign_link",
    "redirect",
    "encoding",
    "misreport",
    "close_delimited",
    "ignore_range",
    "overlong",
    "trickle",
    "latency",
    "endless",
    "endless_body",
    "echo_secret",
    "bandwidth",
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
LINK_STYLES = ("absolute", "backslash", "userinfo")
"""How a ``foreign_link`` rule points a link at the foreign host."""
REDIRECTS = (301, 302, 303, 307, 308)
"""Statuses a ``redirect`` rule answers with."""
ENCODINGS = ("gzip", "deflate")
"""``Content-Encoding`` values of an ``encoding`` rule."""
ENDLESS_MODES = ("repeat_pages", "ignore_window", "changing_next", "deep_dirs")
"""How an ``endless`` rule makes a walk never end."""

_PLATFORM = ("catalog", "listing", "download")
_DEFAULT_ROUTES = {
    "token_expiry": _PLATFORM,
    "cut": ("download",),
    "listing_change": ("catalog",),
    "foreign_link": ("listing",),
    "redirect": _PLATFORM,
    "encoding": ("download",),
    "misreport": ("listing",),
    "close_delimited": ("download",),
    "ignore_range": ("download",),
    "overlong": ("download",),
    "trickle": _PLATFORM,
    "endless": ("catalog", "listing"),
    "endless_body": ("catalog",),
    "echo_secret": ("token",),
    "bandwidth": ("download",),
}
# The only routes a kind can apply to, where it cannot apply to all.
_ONLY_ROUTES = {
    "token_expiry": _PLATFORM,
    "listing_change": ("catalog",),
    "foreign_link": ("listing",),
    "misreport": ("listing",),
    "endless": ("catalog", "listing"),
    "bandwidth": ("download",),
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
    "foreign_link": ("host", "style"),
    "redirect": ("status", "location"),
    "encoding": ("encoding",),
    "misreport": ("delta",),
    "overlong": ("extra",),
    "trickle": ("per_second",),
    "latency": ("delay",),
    "endless": ("mode",),
    "echo_secret": ("status",),
    "bandwidth": ("per_second",),
}
_OPTION_NAMES = tuple(
    dict.fromkeys(name for names in _OPTIONS.values() for name in names)
)
_REQUIRED = {
    "rate": "per_second",
    "cut": "after_bytes",
    "foreign_link": "host",
    "redirect": "location",
    "misreport": "delta",
    "latency": "delay",
    "endless": "mode",
    "bandwidth": "per_second",
}
_STATUSES = {
    "5xx": SERVER_ERRORS,
    "redirect": REDIRECTS,
    "echo_secret": (429, *SERVER_ERRORS),
}
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
# An http(s) URL or an absolute path (``//host...`` too): printable ASCII, no space
# or double quote, so it is a safe header value and fits in a fault spec.
_LOCATION = re.compile(r"(?:https?:/)?/[!#-~]*")


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


def _non_zero(_: Any, __: attrs.Attribute[Any], value: Optional[int]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        raise ValueError(f"delta must be a whole number other than 0, got {value!r}")


def _matches(pattern: re.Pattern[str], what: str, form: str) -> Any:
    def check(_: Any, __: attrs.Attribute[Any], value: Optional[str]) -> None:
        if value is not None and not (
            isinstance(value, str) and pattern.fullmatch(value)
        ):
            raise ValueError(f"{what} must be {form}, got {value!r}")

    return check


def _probability(_: Any, __: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"probability must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"probability must be between 0 and 1, got {value!r}")


def _option(validator: Any) -> Any:
    return attrs.field(default=None, kw_only=True, validator=validator)


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

            Hostile kinds, a platform that is buggy or turned against its client:

            - ``"foreign_link"``: point the links of a Data Access listing
              (``_links.next`` and each item's ``_links.self``) at ``host``, in
              ``style`` (one of :data:`~aep_extract.testing.faults.LINK_STYLES`,
              default ``"backslash"``); paths and queries stay;
            - ``"redirect"``: answer ``status`` (one of
              :data:`~aep_extract.testing.faults.REDIRECTS`, default 307) with
              ``Location: location``, where ``{path}`` stands for the request's path
              and query;
            - ``"encoding"``: send the body compressed with ``Content-Encoding:
              encoding`` (``"gzip"``, the default, or ``"deflate"``); a 206 keeps its
              ``Content-Range``;
            - ``"misreport"``: add ``delta`` to the ``length`` of every physical file
              a listing names (never below 0);
            - ``"close_delimited"``: send no ``Content-Length`` but ``Connection:
              close``: the body ends when the connection does;
            - ``"ignore_range"``: answer a request with ``Range`` 200 and the whole
              body;
            - ``"overlong"``: append ``extra`` junk bytes (default 16) to the body,
              counted by ``Content-Length`` but not by ``Content-Range``;
            - ``"trickle"``: send the body at ``per_second`` bytes per second
              (default 1) for as long as the client reads;
            - ``"latency"``: wait ``delay`` seconds before answering at all;
            - ``"endless"``: a walk that never ends, by ``mode`` (one of
              :data:`~aep_extract.testing.faults.ENDLESS_MODES`): Catalog batch
              listings that ignore ``start`` and ``createdAfter``
              (``"repeat_pages"``) or ``createdBefore`` (``"ignore_window"``), Data
              Access pages whose ``_links.next`` differs every time
              (``"changing_next"``), dataSetFileIds that are directories of a new id
              every time (``"deep_dirs"``);
            - ``"endless_body"``: answer 200 JSON whose body never ends;
            - ``"echo_secret"``: answer ``status`` (429 or one of
              :data:`~aep_extract.testing.faults.SERVER_ERRORS`, default 500) with an
              error body that echoes the secret the client sent: the token route's
              ``client_secret``, raw and URL-encoded, or the ``Authorization``
              header elsewhere.

            And a link, not a fault:

            - ``"bandwidth"``: send file bodies (downloads, its only route) at
              most ``per_second`` bytes per second on each connection, as a WAN
              link would, whatever way of sending another rule picked
              (``probability`` must stay 1). Each body it paces counts as served.

        probability: chance in ``[0, 1]`` that the rule fires on a request it
            applies to.
        routes: route kinds (:data:`~aep_extract.testing.faults.ROUTES`) it
            applies to, as a sequence or a string like ``"catalog+listing"``; None
            for the kind's default: every route, but ``token_expiry``,
            ``redirect`` and ``trickle`` (platform routes), ``cut``, ``encoding``,
            ``close_delimited``, ``ignore_range`` and ``overlong`` (downloads),
            ``listing_change`` and ``endless_body`` (Catalog), ``foreign_link``,
            ``misreport`` (listings, their only route), ``bandwidth``
            (downloads, its only route), ``endless`` (Catalog and
            listings) and ``echo_secret`` (token).
        match: a regular expression searched in the request path; None for any.
        max_faults: the most faults this rule serves; None for no limit.
        retry_after: ``429``: seconds for ``Retry-After``; None sends no header.
        status: ``5xx``, ``redirect``, ``echo_secret``: the status to answer.
        after_bytes: ``reset``, ``truncate``: body bytes sent first (at most the
            body's length minus one); ``cut``: the bytes after which bodies are cut.
        delay: ``slow``: seconds between pieces; ``latency``: seconds before the
            answer (more than 0).
        per_second: ``rate``: requests allowed in any one second; ``trickle``:
            bytes sent per second; ``bandwidth``: the most bytes per second.
        change: ``listing_change``: ``"insert"`` or ``"move"``.
        host: ``foreign_link``: the foreign ``HOST:PORT``.
        style: ``foreign_link``: how the link names it.
        location: ``redirect``: an ``http(s)`` URL or an absolute path.
        encoding: ``encoding``: ``"gzip"`` or ``"deflate"``.
        delta: ``misreport``: bytes added to each length (negative: taken off).
        extra: ``overlong``: junk bytes appended.
        mode: ``endless``: which walk never ends.

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
    max_faults: Optional[int] = _option(_at_least(1, "max_faults", whole=True))
    retry_after: Optional[float] = _option(_at_least(0, "retry_after"))
    status: Optional[int] = _option(_at_least(100, "status", whole=True))
    after_bytes: Optional[int] = _option(_at_least(0, "after_bytes", whole=True))
    delay: Optional[float] = _option(_at_least(0, "delay"))
    per_second: Optional[float] = _option(_at_least(0, "per_second", above=True))
    change: Optional[str] = _option(_in(LISTING_CHANGES, "listing change"))
    host: Optional[str] = _option(_matches(_HOST, "host", "HOST:PORT"))
    style: Optional[str] = _option(_in(LINK_STYLES, "link style"))
    location: Optional[str] = _option(
        _matches(_LOCATION, "location", "an http(s) URL or a path starting with /")
    )
    encoding: Optional[str] = _option(_in(ENCODINGS, "encoding"))
    delta: Optional[int] = _option(_non_zero)
    extra: Optional[int] = _option(_at_least(1, "extra", whole=True))
    mode: Optional[str] = _option(_in(ENDLESS_MODES, "endless mode"))

    def __attrs_post_init__(self) -> None:
        allowed = _OPTIONS.get(self.kind, ())
        for name in _OPTION_NAMES:
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(
                    f"option {name!r} does not apply to {self.kind} faults"
                )
        required = _REQUIRED.get(self.kind)
        if required is not None and getattr(self, required) is None:
            raise ValueError(f"{self.kind} faults need {required!r}")
        statuses = _STATUSES.get(self.kind, ())
        if self.status is not None and self.status not in statuses:
            expected = ", ".join(map(str, statuses))
            raise ValueError(
                f"unknown status {self.status!r} for {self.kind} faults "
                f"(expected one of {expected})"
            )
        if self.kind == "latency" and self.delay == 0:
            raise ValueError("latency faults need a delay of more than 0")
        if self.kind in ("rate", "bandwidth") and self.probability != 1.0:
            raise ValueError(
                f"{self.kind} faults take no probability (the limit decides)"
            )
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(
                    f"invalid match pattern {self.match!r}: {exc}"
                ) from None
        only = _ONLY_ROUTES.get(self.kind, ROUTES)
        if not set(self.scope) <= set(only):
            routes = "route" if len(only) == 1 else "routes"
            raise ValueError(
                f"{self.kind} faults apply to the {'+'.join(only)} {routes} only"
            )

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

    Rules are consulted in order. Before the platform answers, the first that fires
    of those that answer in its place (``429``, ``5xx``, ``rate``, ``redirect``,
    ``endless_body``, ``echo_secret``, ``endless`` in mode ``deep_dirs``) answers,
    and no later rule is consulted; the others before it act besides:
    ``token_expiry`` and ``listing_change``, ``ignore_range`` and ``endless``
    (``repeat_pages``, ``ignore_window``) change the request the platform answers,
    and the first ``latency`` delays the answer. Then, on a successful answer with a
    body, every rule that fires of ``foreign_link``, ``misreport`` and ``endless``
    (``changing_next``) rewrites its JSON, then of ``encoding`` and ``overlong``
    changes its bytes, and the first that fires of those that change how a body is
    sent (``reset``, ``truncate``, ``slow``, ``cut``, ``close_delimited``,
    ``trickle``) applies, and the first ``bandwidth`` rule limits how fast.

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
        is the probability, but requests per second for ``rate``, bytes per
        second for ``bandwidth`` and bytes for ``cut``; ``500``, ``502``, ``503``
        and ``504`` are ``5xx`` rules with that status. After the value come, in
        any order, ``@ROUTE[+ROUTE...]`` to scope the rule and ``:NAME=VALUE``
        options: ``retry_after`` (seconds, or ``none``),
        ``after`` (bytes), ``delay`` (seconds), ``per_second``, ``change``,
        ``status``, ``host``, ``style``, ``location``, ``encoding``, ``delta``,
        ``extra``, ``mode`` (as the :class:`FaultRule` fields of those names) and
        ``max`` (faults of this rule). A ``:`` or ``@`` that starts no option or
        route stays in the value before it (``host=127.0.0.1:9999``); a value with
        a comma, or one that would still read as several, goes in double quotes
        (``location="http://a@b/x,y"``). ``seed=N`` and ``max=N`` set the plan's
        seed and ``max_faults``. For example::

            429=0.1,reset=0.05@download,5xx=0.05,truncate=0.05,rate=20,cut=1048576
            bandwidth=25000000,reset=0.01
            seed=3,429=0.2:retry_after=1@catalog+listing,slow=0.1:delay=0.2,max=50
            foreign_link=1:host=127.0.0.1:9999,redirect=0.1:location=/x{path}

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
