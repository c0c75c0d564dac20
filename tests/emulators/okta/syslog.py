"""``GET /api/v1/logs``: the System Log API, as its reference describes it.

Okta API reference, System Log ("List all System Log events") and the "System Log
query" guide:

- ``since`` / ``until`` (ISO 8601): the lower / upper time bound. With ``until`` the
  request is *bounded*: events by ``published`` time, ``next`` only while more remain.
  Without it the request is a *polling* request: bounds apply to the time Okta
  persisted the event, results come in persistence order, and the ``next`` link is
  always sent (follow it later to get what arrived since).
- ``since`` defaults to 7 days before ``until``; ``until`` to now.
- ``limit``: default 100, at most 1000. ``sortOrder``: ASCENDING (default) or DESCENDING.
- ``filter``: the SCIM-like expression language (``eventType eq "..."``, ``sw``, ``and``,
  ``or``); ``after``: the opaque cursor from the ``next`` link.
- Events are retained for 90 days; older ones are not returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .query import QueryError, parse
from .state import OktaState

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadLogQuery(ValueError):
    """A parameter the System Log API refuses with 400 E0000001 / E0000031."""


def parse_time(value: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadLogQuery(f"{name}: invalid ISO 8601 timestamp {value!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _published(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["published"]).replace("Z", "+00:00"))


def list_logs(state: OktaState, params: Mapping[str, str], now: float,
              ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """(page of events, query of the next link or None)."""
    moment = datetime.fromtimestamp(now, UTC)
    polling = not params.get("until")
    until = moment if polling else parse_time(params["until"], "until")
    since = parse_time(params["since"], "since") if params.get("since") else \
        until - timedelta(days=7)
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except ValueError as exc:
        raise BadLogQuery("limit: not a number") from exc
    limit = min(max(limit, 1), MAX_LIMIT)
    order = (params.get("sortOrder") or "ASCENDING").upper()
    if order not in ("ASCENDING", "DESCENDING"):
        raise BadLogQuery(f"sortOrder: {order!r}")
    try:
        match = parse(params["filter"]) if params.get("filter") else None
    except QueryError as exc:
        raise BadLogQuery(f"filter: {exc}") from exc
    oldest = moment - state.log_retention
    with state.lock:
        # Retention: what is older than 90 days is gone for every query.
        state.events[:] = [e for e in state.events if _published(e) >= oldest]
        rows = list(enumerate(state.events))
    # A cursor is the persistence sequence of the last event handed out.
    after = int(params["after"]) if (params.get("after") or "").isdigit() else -1
    picked: list[tuple[int, dict[str, Any]]] = []
    for seq, event in rows:
        if polling:
            persisted = datetime.fromtimestamp(float(event["_persisted"]), UTC)
            if persisted > moment or persisted < since or seq <= after:
                continue
        else:
            if not since <= _published(event) < until or seq <= after:
                continue
        if match is not None and not match(event):
            continue
        picked.append((seq, event))
    if not polling:
        picked.sort(key=lambda p: (p[1]["published"], p[0]), reverse=order == "DESCENDING")
    page = picked[:limit]
    body = [{k: v for k, v in e.items() if not k.startswith("_")} for _, e in page]
    base = {k: v for k, v in params.items() if k not in ("after",)}
    if polling:
        # A polling request always links onward: from the last event, or, when none was
        # returned, from where this one started.
        cursor = page[-1][0] if page else after
        nxt = {**base, "after": str(cursor)} if cursor >= 0 else dict(base)
        return body, nxt
    if len(picked) > limit:
        return body, {**base, "after": str(page[-1][0])}
    return body, None
