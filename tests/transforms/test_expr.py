"""The filter's expression language: a grammar, never Python's eval."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aep_extract import ConfigError
from aep_extract.transforms._expr import (
    And,
    Compare,
    In,
    IsNull,
    Not,
    Or,
    parse,
    render,
)

A1 = Compare(("a",), "=", 1)
B2 = Compare(("b",), "=", 2)
C3 = Compare(("c",), "=", 3)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a = 1 or b = 2 and c = 3", Or(A1, And(B2, C3))),
        ("a = 1 and b = 2 or c = 3", Or(And(A1, B2), C3)),
        ("(a = 1 or b = 2) and c = 3", And(Or(A1, B2), C3)),
        ("not a = 1 and b = 2", And(Not(A1), B2)),
        ("not (a = 1 and b = 2)", Not(And(A1, B2))),
        ("NOT not a=1", Not(Not(A1))),
        ("a = 1 or b = 2 or c = 3", Or(Or(A1, B2), C3)),
        ("x.y.z is null", IsNull(("x", "y", "z"))),
        ("x IS NOT NULL", Not(IsNull(("x",)))),
        ("x in ('a', \"b\")", In(("x",), ("a", "b"))),
        ("x not in (1, 2.5)", Not(In(("x",), (1, 2.5)))),
        ("x != -1.5e3", Compare(("x",), "!=", -1500.0)),
        ("x >= true", Compare(("x",), ">=", True)),
        ("x < 'it\\'s'", Compare(("x",), "<", "it's")),
        (
            "timestamp >= timestamp '2024-06-10T00:00:00.500+02:00'",
            Compare(
                ("timestamp",),
                ">=",
                datetime(2024, 6, 10, 0, 0, 0, 500000, timezone(timedelta(hours=2))),
            ),
        ),
    ],
)
def test_the_grammar_and_its_precedence(text, tree):
    assert parse(text) == tree
    assert parse(render(tree)) == tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('id')", r"unexpected \".system\('i\" at 16"),
        (
            "__import__('os')",
            r"expected a comparison, 'in' or 'is' after '__import__' at 10",
        ),
        ("a = __import__('os')", "expected a literal .* at 4, found '__import__'"),
        ("a = 1; drop table x", "unexpected '; drop tab' at 5"),
        ("a = 1 or exec('x')", "expected a comparison, 'in' or 'is' after 'exec'"),
        ("a = 1 b = 2", "expected 'and', 'or' or the end at 6"),
        ("a == 1", "expected a literal"),
        ("a = ", "expected a literal .* at 4, found the end"),
        ("(a = 1", r"expected '\)' at 6, found the end"),
        ("and = 1", "expected a field path at 0"),
        ("a = b", "expected a literal"),
        ("a in ()", "expected a literal"),
        ("a = 1e999", "out of range"),
        ("a = lambda: 0", "unexpected ': 0' at 10"),
        ("a = {1}", r"unexpected '\{1\}' at 4"),
        ("t > timestamp '2024-06-10T00:00:00'", "no UTC offset"),
        ("t > timestamp 'yesterday'", "not an ISO 8601 timestamp"),
        ("", "expected a field path at 0, found the end"),
    ],
)
def test_anything_else_is_refused_with_its_position(text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_a_dunder_path_is_only_a_field_name():
    """Paths name fields of the file; nothing is looked up on Python objects."""
    assert parse("a.__class__ = 1") == Compare(("a", "__class__"), "=", 1)
