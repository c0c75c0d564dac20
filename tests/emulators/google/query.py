"""Search queries and partial responses, the subset the connector and its tests use.

Users: developers.google.com/workspace/admin/directory/v1/guides/search-users -- clauses
``field op value`` joined by spaces (AND); ``=`` is an exact match, ``:`` a prefix match
(a trailing ``*`` is allowed); values may be single-quoted; ``orgUnitPath=/A`` also
matches sub-units. Groups: .../v1/guides/search-groups (``email``, ``name``, ``memberKey``).
Partial responses: the ``fields`` system parameter
(developers.google.com/workspace/admin/directory/v1/guides/performance#partial-response).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

CLAUSE = re.compile(r"\s*(\w+)\s*([=:])\s*('(?:[^'\\]|\\.)*'|[^\s]+)")


class InvalidQuery(ValueError):
    """The query does not parse or names a field the API does not search."""


Predicate = Callable[[dict[str, Any]], bool]


def parse(query: str, fields: dict[str, Callable[[dict[str, Any]], Any]]) -> list[Predicate]:
    """Predicates for each clause; ``fields`` maps a searchable name to a value getter."""
    preds: list[Predicate] = []
    pos = 0
    text = query.strip()
    while pos < len(text):
        m = CLAUSE.match(text, pos)
        if not m:
            raise InvalidQuery(query)
        name, op, raw = m.groups()
        pos = m.end()
        getter = fields.get(name)
        if getter is None:
            raise InvalidQuery(query)
        value = raw[1:-1].replace("\\'", "'") if raw.startswith("'") else raw
        preds.append(_clause(name, op, value, getter))
    return preds


def _clause(name: str, op: str, value: str, get: Callable[[dict[str, Any]], Any]) -> Predicate:
    want = value.casefold()
    if want in ("true", "false") and name.startswith("is"):
        flag = want == "true"
        return lambda obj: bool(get(obj)) is flag
    if name == "orgUnitPath":
        base = want.rstrip("/") or "/"
        return lambda obj: (str(get(obj)).casefold() == base
                            or str(get(obj)).casefold().startswith(base.rstrip("/") + "/"))
    if op == "=":
        return lambda obj: any(str(v).casefold() == want for v in _values(get(obj)))
    prefix = want.rstrip("*")
    return lambda obj: any(
        word.startswith(prefix) for v in _values(get(obj)) for word in
        [str(v).casefold(), *str(v).casefold().split()])


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- partial response


def select(obj: Any, spec: str) -> Any:
    """Apply a ``fields`` selector such as ``nextPageToken,users(id,name/fullName)``."""
    tree, rest = _parse_fields(spec.replace(" ", ""), 0)
    if rest != len(spec.replace(" ", "")):
        raise InvalidQuery(spec)
    return _apply(obj, tree)


Tree = dict[str, "Tree | None"]


def _parse_fields(spec: str, pos: int) -> tuple[Tree, int]:
    tree: Tree = {}
    while pos < len(spec):
        m = re.compile(r"[\w*]+(?:/[\w*]+)*").match(spec, pos)
        if not m:
            raise InvalidQuery(spec)
        path = m.group().split("/")
        pos = m.end()
        sub: Tree | None = None
        if pos < len(spec) and spec[pos] == "(":
            sub, pos = _parse_fields(spec, pos + 1)
            if pos >= len(spec) or spec[pos] != ")":
                raise InvalidQuery(spec)
            pos += 1
        node = tree
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = {}
                node[part] = nxt
            node = nxt
        node[path[-1]] = sub
        if pos < len(spec) and spec[pos] == ",":
            pos += 1
            continue
        break
    return tree, pos


def _apply(obj: Any, tree: Tree | None) -> Any:
    if tree is None or "*" in tree:
        return obj
    if isinstance(obj, list):
        return [_apply(item, tree) for item in obj]
    if not isinstance(obj, dict):
        return obj
    return {k: _apply(obj[k], sub) for k, sub in tree.items() if k in obj}
