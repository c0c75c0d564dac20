"""The expression language of Okta's ``filter`` and ``search`` query parameters.

Okta Users API, "List all users": ``search`` takes SCIM-like expressions
(``profile.email sw "a"``, ``status eq "ACTIVE"``) over most properties;
``filter`` takes the same syntax over a few (``status``, ``lastUpdated``, ``id``,
``profile.login``, ``profile.email``, ``profile.firstName``, ``profile.lastName``)
with ``eq`` plus ``gt``/``ge``/``lt``/``le`` on ``lastUpdated``. Both combine with
``and``/``or`` and parentheses. A malformed expression is answered with 400
E0000031 "Invalid search criteria." by the server, which :class:`QueryError` models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([A-Za-z_][\w.]*)|(\S))')
_OPS = {"eq", "ne", "sw", "co", "ew", "gt", "ge", "lt", "le", "pr"}


class QueryError(ValueError):
    """The expression cannot be parsed or uses an operator the parameter refuses."""


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``profile.email``), or None."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def parse(text: str, allowed_fields: frozenset[str] | None = None) -> Predicate:
    """Compile an expression; ``allowed_fields`` limits attributes (the ``filter`` rules)."""
    tokens = _tokenize(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise QueryError("unexpected end of expression")
        pos += 1
        return tokens[pos - 1]

    def expr() -> Predicate:
        left = term()
        while (tok := peek()) and tok == ("word", "or"):
            take()
            right = term()
            left = _or(left, right)
        return left

    def term() -> Predicate:
        left = factor()
        while (tok := peek()) and tok == ("word", "and"):
            take()
            right = factor()
            left = _and(left, right)
        return left

    def factor() -> Predicate:
        kind, value = take()
        if kind == "(":
            inner = expr()
            if take()[0] != ")":
                raise QueryError("missing ')'")
            return inner
        if kind != "word":
            raise QueryError(f"unexpected {value!r}")
        attr = value
        if allowed_fields is not None and attr not in allowed_fields:
            raise QueryError(f"attribute {attr!r} cannot be used here")
        op_kind, op = take()
        if op_kind != "word" or op.lower() not in _OPS:
            raise QueryError(f"unknown operator {op!r}")
        op = op.lower()
        if op == "pr":
            return lambda obj: lookup(obj, attr) not in (None, "")
        lit_kind, literal = take()
        if lit_kind == "string":
            operand: Any = literal
        elif lit_kind == "word" and literal in ("true", "false"):
            operand = literal == "true"
        else:
            raise QueryError(f"expected a quoted value after {op!r}")
        return _compare(attr, op, operand)

    result = expr()
    if pos != len(tokens):
        raise QueryError(f"unexpected {tokens[pos][1]!r}")
    return result


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        if m.group(1):
            tokens.append(("(", "("))
        elif m.group(2):
            tokens.append((")", ")"))
        elif m.group(3) is not None:
            tokens.append(("string", m.group(3).replace('\\"', '"')))
        elif m.group(4):
            tokens.append(("word", m.group(4)))
        else:
            raise QueryError(f"unexpected {m.group(5)!r}")
    if not tokens:
        raise QueryError("empty expression")
    return tokens


def _compare(attr: str, op: str, operand: Any) -> Predicate:
    def check(obj: Mapping[str, Any]) -> bool:
        value = lookup(obj, attr)
        if value is None:
            return False
        if isinstance(operand, bool) or not isinstance(value, str):
            left: Any = value
            right: Any = operand
        else:
            # Okta string comparisons are case-insensitive for eq/sw on profile
            # attributes; status and type values are upper-case constants anyway.
            left, right = value.lower(), str(operand).lower()
        if op == "eq":
            return bool(left == right)
        if op == "ne":
            return bool(left != right)
        if op == "sw":
            return str(left).startswith(str(right))
        if op == "ew":
            return str(left).endswith(str(right))
        if op == "co":
            return str(right) in str(left)
        # gt/ge/lt/le: ISO 8601 timestamps in one format compare as strings.
        return bool({"gt": left > right, "ge": left >= right, "lt": left < right,
                     "le": left <= right}[op])
    return check


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda obj: a(obj) and b(obj)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda obj: a(obj) or b(obj)
