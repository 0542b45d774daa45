"""The row filter's expression language, parsed into a small tree (no ``eval``).

::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | predicate
    predicate  := PATH OP literal | PATH ["not"] "in" "(" literal ("," literal)* ")"
                | PATH "is" ["not"] "null"
    OP         := "=" | "!=" | "<" | "<=" | ">" | ">="
    literal    := STRING | NUMBER | "true" | "false" | "timestamp" STRING
    PATH       := NAME ("." NAME)*          NAME := [A-Za-z_][A-Za-z0-9_]*

Strings are quoted with ``'`` or ``"``; ``\\`` escapes the next character.
A timestamp's string is ISO 8601 with an offset or ``Z``. Keywords are
case-insensitive; ``timestamp`` is also a field name where no string follows it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Union

import attrs

from ..errors import ConfigError
from ..models import parse_timestamp

Value = Union[str, int, float, bool, datetime]

OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z_])
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op><=|>=|!=|=|<|>|\(|\)|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE | re.DOTALL,
)


@attrs.frozen
class Compare:
    """``path op value``."""

    path: tuple[str, ...]
    op: str
    value: Value


@attrs.frozen
class In:
    """``path in (values...)``."""

    path: tuple[str, ...]
    values: tuple[Value, ...]


@attrs.frozen
class IsNull:
    """``path is null``."""

    path: tuple[str, ...]


@attrs.frozen
class Not:
    """``not operand``."""

    operand: Expr


@attrs.frozen
class And:
    """``left and right``."""

    left: Expr
    right: Expr


@attrs.frozen
class Or:
    """``left or right``."""

    left: Expr
    right: Expr


Expr = Union[Compare, In, IsNull, Not, And, Or]


@attrs.define
class _Token:
    kind: str
    text: str
    position: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "name" and self.text.lower() in words


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise ConfigError(
                f"filter: unexpected {text[start : start + 10]!r} at {start}"
            )
        tokens.append(
            _Token(
                match.lastgroup,
                match.group(match.lastgroup),
                match.start(match.lastgroup),
            )
        )
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def fail(self, expected: str) -> ConfigError:
        token = self.token
        found = repr(token.text) if token.kind != "end" else "the end"
        return ConfigError(
            f"filter: expected {expected} at {token.position}, found {found}"
        )

    def expect(self, text: str) -> None:
        if self.token.text.lower() != text:
            raise self.fail(repr(text))
        self.index += 1

    def expr(self) -> Expr:
        node = self.term()
        while self.token.is_word("or"):
            self.index += 1
            node = Or(node, self.term())
        return node

    def term(self) -> Expr:
        node = self.factor()
        while self.token.is_word("and"):
            self.index += 1
            node = And(node, self.factor())
        return node

    def factor(self) -> Expr:
        if self.token.is_word("not"):
            self.index += 1
            return Not(self.factor())
        if self.token.text == "(":
            self.index += 1
            node = self.expr()
            self.expect(")")
            return node
        return self.predicate()

    def predicate(self) -> Expr:
        token = self.token
        if token.kind != "name" or token.text.lower() in _KEYWORDS:
            raise self.fail("a field path")
        self.index += 1
        path = tuple(token.text.split("."))
        if self.token.kind == "op" and self.token.text in OPERATORS:
            op = self.take().text
            return Compare(path, op, self.literal())
        if self.token.is_word("is"):
            self.index += 1
            negated = self.token.is_word("not")
            self.index += negated
            self.expect("null")
            return Not(IsNull(path)) if negated else IsNull(path)
        negated = self.token.is_word("not")
        self.index += negated
        if not self.token.is_word("in"):
            raise self.fail("a comparison, 'in' or 'is' after " + repr(token.text))
        self.index += 1
        self.expect("(")
        values = [self.literal()]
        while self.token.text == ",":
            self.index += 1
            values.append(self.literal())
        self.expect(")")
        node = In(path, tuple(values))
        return Not(node) if negated else node

    def literal(self) -> Value:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            if not any(c in token.text for c in ".eE"):
                return int(token.text)
            number = float(token.text)
            if not math.isfinite(number):
                raise ConfigError(f"filter: number {token.text} is out of range")
            return number
        if token.is_word("true", "false"):
            return token.text.lower() == "true"
        if token.is_word("timestamp") and self.token.kind == "string":
            text = _unquote(self.take().text)
            try:
                return parse_timestamp(text)
            except ConfigError as exc:
                raise ConfigError(f"filter: {exc}") from None
        self.index -= 1
        raise self.fail("a literal (a string, number, true, false or timestamp '...')")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


def parse(text: str) -> Expr:
    """The tree of a filter expression.

    Raises:
        ConfigError: the text is not in the grammar above.
    """
    parser = _Parser(text)
    node = parser.expr()
    if parser.token.kind != "end":
        raise parser.fail("'and', 'or' or the end")
    return node


def render(node: Expr) -> str:
    """The canonical text of a tree: ``parse(render(tree)) == tree``."""
    if isinstance(node, Compare):
        return f"{'.'.join(node.path)} {node.op} {_literal(node.value)}"
    if isinstance(node, In):
        values = ", ".join(_literal(value) for value in node.values)
        return f"{'.'.join(node.path)} in ({values})"
    if isinstance(node, IsNull):
        return f"{'.'.join(node.path)} is null"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    word = "and" if isinstance(node, And) else "or"
    return f"({render(node.left)}) {word} ({render(node.right)})"


def _literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"timestamp '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)
