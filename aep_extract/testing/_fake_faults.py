"""Runs a :class:`~.faults.FaultPlan` on the fake platform's requests (thread-safe)."""

from __future__ import annotations

import collections
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import attrs

from . import _fake_api as api
from . import _fake_hostile as hostile
from ._fake_api import Entry, Reorder
from ._fake_gateway import IMS_TOKEN_PATH, throttled
from ._fake_http import Delivery, FakeRequest, FakeResponse, limit_bandwidth
from .faults import FAULT_KINDS, SERVER_ERRORS, FaultPlan, FaultRule

logger = logging.getLogger(__name__)

SLOW_PIECES = 4
"""A ``slow`` body is sent in this many pieces."""
DEFAULT_SLOW_DELAY = 0.05
"""Seconds between the pieces of a ``slow`` body when the rule names no ``delay``."""

_ANSWERS = frozenset({"429", "5xx", "redirect", "endless_body", "echo_secret"})
_STAGES = {
    **dict.fromkeys(("foreign_link", "misreport"), "json"),
    **dict.fromkeys(("encoding", "overlong"), "bytes"),
    **dict.fromkeys(
        ("reset", "truncate", "slow", "cut", "close_delimited", "trickle"), "delivery"
    ),
    "bandwidth": "link",
}
_BATCHES_PATH = f"{api.CATALOG}/batches"
_PROBLEM = "application/problem+json;charset=utf-8"
_TITLES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

Serve = Callable[[FakeRequest, Optional[Reorder]], FakeResponse]
"""Answers a request as the platform would, with the listing changed by a Reorder."""
Hook = Callable[[FakeRequest], Optional[tuple[int, Mapping[str, str], bytes]]]
"""A fault hook: ``(status, headers, body)`` to answer with, or None."""


class FaultControl:
    """A platform's faults: hooks first, then the plan in force (thread-safe).

    Counts of faults served add up across plans.
    """

    def __init__(self, *, sandbox: str) -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()
        self._hooks: list[Hook] = []
        self._injector: Optional[FaultInjector] = None
        self._served = dict.fromkeys(FAULT_KINDS, 0)

    def add_hook(self, hook: Hook) -> None:
        """Consult ``hook`` after those added before."""
        with self._lock:
            self._hooks.append(hook)

    def clear(self) -> None:
        """Remove every hook and the plan."""
        with self._lock:
            self._hooks.clear()
        self.set_plan(None)

    def set_plan(self, plan: Optional[FaultPlan]) -> None:
        """Run ``plan`` from now on (None: no plan)."""
        injector = None if plan is None else FaultInjector(plan, sandbox=self._sandbox)
        with self._lock:
            old, self._injector = self._injector, injector
            if old is not None:
                for kind, count in old.served.items():
                    self._served[kind] += count

    @property
    def plan(self) -> Optional[FaultPlan]:
        """The plan in force."""
        injector = self._injector
        return None if injector is None else injector.plan

    @property
    def served(self) -> dict[str, int]:
        """Faults the plans served, by kind."""
        with self._lock:
            served, injector = dict(self._served), self._injector
        if injector is not None:
            for kind, count in injector.served.items():
                served[kind] += count
        return served

    def handle(
        self, request: FakeRequest, serve: Serve, revoke: Callable[[], None]
    ) -> FakeResponse:
        """Answer ``request`` through the hooks, the plan and ``serve``."""
        with self._lock:
            hooks, injector = list(self._hooks), self._injector
        for hook in hooks:
            answer = hook(request)
            if answer is not None:
                status, headers, body = answer
                return FakeResponse(status, dict(headers), body)
        if injector is None:
            return serve(request, None)
        return injector.handle(request, serve, revoke)


def route_of(request: FakeRequest) -> Optional[str]:
    """The route kind of a request (see :data:`~.faults.ROUTES`); None for others."""
    if request.path == IMS_TOKEN_PATH:
        return "token"
    if request.path.startswith(api.CATALOG + "/"):
        return "catalog"
    if request.path.startswith(api.EXPORT + "/"):
        return "download" if "path" in request.query else "listing"
    return None


def request_key(request: FakeRequest) -> str:
    """What identifies "the same request" for the plan's decisions."""
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query.items()))
    return f"{request.method} {request.path}?{query} {request.headers.get('Range', '')}"


def _stage(rule: FaultRule) -> str:
    """When a rule acts: ``before`` the platform answers, or after, on its answer's
    ``json``, its ``bytes``, its ``delivery`` or its ``link`` (bandwidth)."""
    if rule.kind == "endless" and rule.mode == "changing_next":
        return "json"
    return _STAGES.get(rule.kind, "before")


@attrs.define
class _Ticket:
    """One request's identity for the decisions: route, key and occurrence."""

    route: str
    key: str
    occurrence: int


@attrs.define
class _Before:
    """What the rules decided before the platform answers."""

    request: FakeRequest  # what the platform answers, maybe changed
    answer: Optional[FakeResponse] = None  # a fault's, in the platform's place
    expire: bool = False
    reorder: Optional[Reorder] = None
    wait: float = 0.0


class FaultInjector:
    """Decides, per request, which of a plan's faults to serve, and counts them.

    Args:
        plan: the plan.
        sandbox: the sandbox named in problem-details bodies.
        clock: monotonic seconds (for the ``rate`` limiter).
    """

    def __init__(
        self,
        plan: FaultPlan,
        *,
        sandbox: str = "prod",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self._sandbox = sandbox
        self._clock = clock
        self._lock = threading.Lock()
        self._patterns = [
            re.compile(rule.match) if rule.match is not None else None
            for rule in plan.rules
        ]
        self._seen: collections.Counter[str] = collections.Counter()
        self._served = dict.fromkeys(FAULT_KINDS, 0)
        self._by_rule = [0] * len(plan.rules)
        self._stages = [_stage(rule) for rule in plan.rules]
        self._admitted: dict[int, collections.deque[float]] = {}
        self._listings: dict[str, list[str]] = {}
        self._listing_starts: dict[str, tuple[str, str]] = {}

    @property
    def served(self) -> dict[str, int]:
        """Faults served so far, by kind (every kind present)."""
        with self._lock:
            return dict(self._served)

    def handle(
        self, request: FakeRequest, serve: Serve, revoke: Callable[[], None]
    ) -> FakeResponse:
        """Answer ``request``: with a fault, or by ``serve`` with faults applied.

        ``revoke`` invalidates every token (for ``token_expiry``).
        """
        route = route_of(request)
        if route is None:
            return serve(request, None)
        key = request_key(request)
        with self._lock:
            ticket = _Ticket(route, key, self._seen[key])
            self._seen[key] += 1
            before = self._before(request, ticket)
        if before.expire:
            revoke()
        response = before.answer
        if response is None:
            response = serve(before.request, before.reorder)
            with self._lock:
                response = self._after(request, ticket, response)
        if before.wait:
            delivery = attrs.evolve(response.delivery or Delivery(), wait=before.wait)
            response = attrs.evolve(response, delivery=delivery)
        return response

    # -- decisions (under the lock) ------------------------------------------------

    def _applies(self, index: int, request: FakeRequest, ticket: _Ticket) -> bool:
        rule = self.plan.rules[index]
        if ticket.route not in rule.scope:
            return False
        pattern = self._patterns[index]
        if pattern is not None and not pattern.search(request.path):
            return False
        limit = self.plan.max_faults
        if limit is not None and sum(self._served.values()) >= limit:
            return False
        return rule.max_faults is None or self._by_rule[index] < rule.max_faults

    def _rules(
        self, stage: str, request: FakeRequest, ticket: _Ticket
    ) -> Iterator[tuple[int, FaultRule]]:
        """The rules of ``stage`` that apply to the request, in order (checked
        as the iteration reaches each, so counts served meanwhile hold)."""
        for index, rule in enumerate(self.plan.rules):
            if self._stages[index] == stage and self._applies(index, request, ticket):
                yield index, rule

    def _fires(self, index: int, ticket: _Ticket) -> bool:
        probability = self.plan.rules[index].probability
        chance = self.plan.chance(index, ticket.key, ticket.occurrence)
        return chance < probability

    def _count(self, index: int) -> None:
        self._served[self.plan.rules[index].kind] += 1
        self._by_rule[index] += 1

    def _before(self, request: FakeRequest, ticket: _Ticket) -> _Before:
        before = _Before(request)
        listing = self._listing_key(request)
        for index, rule in self._rules("before", request, ticket):
            if rule.kind == "rate":
                before.answer = self._limit(index, rule)
                acted = before.answer is not None
            elif not self._fires(index, ticket):
                continue
            elif rule.kind in _ANSWERS:
                before.answer = self._answer(index, rule, ticket, request)
                acted = True
            else:
                acted = self._act(index, rule, ticket, before, listing)
            if acted:
                self._count(index)
            if before.answer is not None:
                return before
        before.reorder = self._reorder(listing)
        return before

    def _act(
        self,
        index: int,
        rule: FaultRule,
        ticket: _Ticket,
        before: _Before,
        listing: Optional[tuple[str, bool]],
    ) -> bool:
        """Apply a rule that fired and does not answer; whether it acted."""
        if rule.kind == "token_expiry":
            if before.expire:
                return False  # one revocation is enough
            before.expire = True
            return True
        if rule.kind == "latency":
            if before.wait:
                return False  # the first latency rule sets the wait
            assert rule.delay is not None
            before.wait = rule.delay
            return True
        if rule.kind == "listing_change":
            if not (listing and listing[1]):
                return False  # only between the pages of one listing
            change = self._change(index, rule, ticket)
            self._listings.setdefault(listing[0], []).append(change)
            return True
        if rule.kind == "endless" and rule.mode == "deep_dirs":
            before.answer = hostile.deep_directory(before.request)
            return before.answer is not None
        if rule.kind == "ignore_range":
            changed = hostile.without_range(before.request)
        else:
            assert rule.mode is not None  # an endless rule
            changed = hostile.endless_query(before.request, rule.mode)
        if changed is None:
            return False
        before.request = changed
        return True

    def _answer(
        self, index: int, rule: FaultRule, ticket: _Ticket, request: FakeRequest
    ) -> FakeResponse:
        if rule.kind == "redirect":
            assert rule.location is not None
            return hostile.redirect(request, rule.status, rule.location)
        if rule.kind == "endless_body":
            return hostile.endless_body()
        if rule.kind == "echo_secret":
            return hostile.echo_secret(request, ticket.route, rule.status)
        if rule.kind == "429":
            headers = {"x-request-id": str(uuid.uuid4())}
            if rule.retry_after is not None:
                headers["Retry-After"] = f"{rule.retry_after:g}"
            return throttled(headers)
        status = rule.status
        if status is None:
            pick = self.plan.chance(index, ticket.key, ticket.occurrence, "status")
            status = SERVER_ERRORS[int(pick * len(SERVER_ERRORS))]
        if ticket.route == "token":  # IMS has its own error shape
            body: dict[str, Any] = {
                "error": "server_error",
                "error_description": f"{_TITLES[status]} (injected fault)",
            }
            return FakeResponse.json(status, body)
        service = "CAT" if ticket.route == "catalog" else "DAS"
        body = {
            "type": f"https://ns.adobe.com/aep/errors/{service}-1500-{status}",
            "title": _TITLES[status],
            "status": status,
            "detail": f"{_TITLES[status]} (injected fault)",
            "report": {"tenantInfo": {"sandboxName": self._sandbox}},
        }
        response = FakeResponse.json(status, body, _PROBLEM)
        headers = {**response.headers, "x-request-id": str(uuid.uuid4())}
        return FakeResponse(status, headers, response.body)

    def _limit(self, index: int, rule: FaultRule) -> Optional[FakeResponse]:
        """The ``rate`` limiter: a sliding one-second window of admitted requests."""
        assert rule.per_second is not None
        now = self._clock()
        window = self._admitted.setdefault(index, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) < rule.per_second:
            window.append(now)
            return None
        wait = max(1, math.ceil(1.0 - (now - window[0])))
        return throttled({"Retry-After": str(wait), "x-request-id": str(uuid.uuid4())})

    # -- listing changes ---------------------------------------------------------

    def _listing_key(self, request: FakeRequest) -> Optional[tuple[str, bool]]:
        """``(listing identity, continued)`` of a Catalog batch listing page, else
        None. A listing moves on by ``start`` (offset paging) or by ``createdAfter``
        (time paging); asking for its first page again begins a new listing."""
        if request.method != "GET" or request.path != _BATCHES_PATH:
            return None
        cursor = ("createdAfter", "start")
        position = (
            request.query.get("createdAfter", ""),
            request.query.get("start", "0"),
        )
        rest = sorted((k, v) for k, v in request.query.items() if k not in cursor)
        identity = json.dumps(rest)
        first = self._listing_starts.setdefault(identity, position)
        return identity, position != first

    def _change(self, index: int, rule: FaultRule, ticket: _Ticket) -> str:
        if rule.change is not None:
            return rule.change
        pick = self.plan.chance(index, ticket.key, ticket.occurrence, "change")
        return "insert" if pick < 0.5 else "move"

    def _reorder(self, listing: Optional[tuple[str, int]]) -> Optional[Reorder]:
        if listing is None:
            return None
        key, continued = listing
        if not continued:
            self._listings.pop(key, None)  # a new listing begins
            return None
        changes = tuple(self._listings.get(key, ()))
        if not changes:
            return None

        def reorder(ordered: list[tuple[str, dict[str, Any]]]) -> list[Entry]:
            entries: list[Entry] = list(ordered)
            for change in changes:
                if change == "insert":
                    entries.insert(0, None)
                else:
                    first = next((i for i, e in enumerate(entries) if e), None)
                    if first is not None:
                        entries.append(entries.pop(first))
            return entries

        return reorder

    # -- bodies ------------------------------------------------------------------

    def _after(
        self, request: FakeRequest, ticket: _Ticket, response: FakeResponse
    ) -> FakeResponse:
        """The platform's answer with the rules of the stages after it applied:
        rewritten JSON, changed bytes, then a faulty delivery."""
        if request.method == "HEAD" or not 200 <= response.status < 300:
            return response
        if not response.body:
            return response
        response = self._rewrite(request, ticket, response)
        for index, rule in self._rules("bytes", request, ticket):
            if self._fires(index, ticket):
                self._count(index)
                if rule.kind == "encoding":
                    response = hostile.encode(response, rule.encoding)
                else:
                    response = hostile.overlong(response, rule.extra)
        size = len(response.body)
        for index, rule in self._rules("delivery", request, ticket):
            delivery = self._delivery(rule, size)
            if delivery is None or not self._fires(index, ticket):
                continue
            self._count(index)
            response = attrs.evolve(response, delivery=delivery)
            break
        for index, rule in self._rules("link", request, ticket):
            assert rule.per_second is not None
            self._count(index)
            return limit_bandwidth(response, rule.per_second)
        return response

    def _rewrite(
        self, request: FakeRequest, ticket: _Ticket, response: FakeResponse
    ) -> FakeResponse:
        """The answer's JSON as the ``json`` stage's rules rewrite it."""
        payload: Any = None
        changed = False
        for index, rule in self._rules("json", request, ticket):
            if not self._fires(index, ticket):
                continue
            if payload is None:
                payload = _json(response)
                if payload is None:
                    return response  # nothing to rewrite
            if rule.kind == "foreign_link":
                assert rule.host is not None
                acted = hostile.foreign_links(payload, rule.host, rule.style)
            elif rule.kind == "misreport":
                assert rule.delta is not None
                acted = hostile.misreport(payload, rule.delta)
            else:
                acted = hostile.changing_next(payload, request)
            if acted:
                self._count(index)
                changed = True
        if not changed:
            return response
        body = json.dumps(payload, separators=(",", ":")).encode()
        return attrs.evolve(response, body=body)

    @staticmethod
    def _delivery(rule: FaultRule, size: int) -> Optional[Delivery]:
        """How ``rule`` sends a body of ``size`` bytes; None if it does not apply."""
        if rule.kind == "close_delimited":
            return Delivery(length=False)
        if rule.kind == "trickle":
            return Delivery(per_second=rule.per_second or hostile.DEFAULT_TRICKLE)
        if rule.kind == "slow":
            if size < 2:
                return None
            delay = DEFAULT_SLOW_DELAY if rule.delay is None else rule.delay
            return Delivery(pieces=SLOW_PIECES, delay=delay)
        if rule.kind == "cut":
            assert rule.after_bytes is not None
            if size <= rule.after_bytes:
                return None
            return Delivery(stop_after=rule.after_bytes)
        sent = size // 2 if rule.after_bytes is None else rule.after_bytes
        return Delivery(stop_after=min(sent, size - 1), reset=rule.kind == "reset")


def _json(response: FakeResponse) -> Any:
    """The JSON of an answer; None if it has none."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        return json.loads(bytes(response.body))
    except ValueError:
        return None
