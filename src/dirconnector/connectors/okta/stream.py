"""The okta change feed: what changed since a position, from three documented sources.

Okta Management API reference:

- Users, "List all users": ``filter=lastUpdated gt "<t>"`` returns every user changed
  after ``t``, all statuses (a filter includes DEPROVISIONED users).
- Groups, "List all groups": ``filter=lastUpdated gt "<t>" or lastMembershipUpdated gt
  "<t>"`` returns renamed, created and re-membered groups; their members are then read
  whole from ``/api/v1/groups/{id}/users``.
- System Log, "List all System Log events" (``GET /api/v1/logs?since=<t>``, scope
  ``okta.logs.read``, 90 days' retention): what the two listings cannot show, a user
  or group deleted outright (``user.lifecycle.delete.*``, ``group.lifecycle.delete``),
  and lifecycle changes (``user.lifecycle.*``), whose users are read again by id.
  A polling request (no ``until``) always sends a ``next`` link; a short page ends it.

The position is the server's clock (the ``Date`` header) when a poll began; the next
poll asks from an overlap earlier, so clock skew and the System Log's lag lose nothing,
and keeps the stamps it saw within the overlap so an object or event seen twice is
handed on once. A position older than the log's retention, one ahead of the server's
clock, or a feed query that fails in a way that may have lost events raise StreamGap:
the caller reads in full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ...errors import IncompleteRead
from .. import StreamGap
from ..feedkit import (
    FeedPosition,
    ShareBudget,
    Sharing,
    check_age,
    check_clock,
    iso_ms,
    note_seen,
    parse_time,
)
from ..filters import SetFilter
from .api import OktaApi, QueryRefused, link_values, next_link, server_date

RETENTION = timedelta(days=90)
"""System Log retention (Okta "Exporting Okta log data": events are kept 90 days)."""
LOG_EVENTS = 'eventType sw "user.lifecycle." or eventType eq "group.lifecycle.delete"'
LOG_PAGE = 1000
"""The System Log's largest page (``limit`` at most 1000)."""
PREFIX = "okta-feed:1:"

Slim = dict[str, str]


@dataclass
class Delta:
    """What changed, as the connector's raw records (slims and memberships)."""

    position: FeedPosition
    users: dict[str, Slim] = field(default_factory=dict)
    removed_users: set[str] = field(default_factory=set)
    filtered_users: set[str] = field(default_factory=set)
    """Users changed into something the user_filter search no longer matches."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Group id -> {"stamp", "members", "name"} as in the read cache."""
    removed_groups: set[str] = field(default_factory=set)
    seen_at: dict[str, float] = field(default_factory=dict)
    requests: int = 0


class OktaFeed:
    """Reads one poll's changes through the connector's OktaApi, within a rate share."""

    def __init__(self, api: OktaApi, *, slim: Callable[[Mapping[str, Any]], Slim],
                 user_filter: SetFilter, group_filter: SetFilter, page_size: int,
                 overlap: timedelta, share: float, clock: Callable[[], float]) -> None:
        self.api = api
        self.slim = slim
        self.user_filter = user_filter
        self.group_filter = group_filter
        self.page_size = page_size
        self.overlap = overlap
        self.budget = ShareBudget(share, "okta", clock)
        self.clock = clock

    def position_now(self) -> FeedPosition:
        """The server's time now, from one small request's Date header."""
        with self._sharing():
            resp = self.api.get("api/v1/users", {"limit": 1})
        return FeedPosition(iso_ms(server_date(resp)))

    def read(self, position: FeedPosition) -> Delta:
        check_age(position, self.clock(), RETENTION, self.overlap, "okta", "System Log")
        since = iso_ms(parse_time(position.at) - self.overlap)
        sent = self.api.http.requests_sent
        self.api.start_clock()
        delta = Delta(FeedPosition(position.at))
        try:
            with self._sharing():
                self._users(since, position, delta)
                assert self.api.server_start is not None
                started = self.api.server_start
                check_clock(position, started, "okta")
                self._groups(since, position, delta)
                self._log(since, position, delta)
        except (QueryRefused, IncompleteRead) as exc:
            raise StreamGap(f"okta: a feed query failed, events may be lost: {exc}") from exc
        delta.position.settle(started, self.overlap)
        delta.requests = self.api.http.requests_sent - sent
        return delta

    # ------------------------------------------------------------------ sources

    def _users(self, since: str, old: FeedPosition, delta: Delta) -> None:
        changed = f'lastUpdated gt "{since}"'
        raws = list(self._items("api/v1/users", {"filter": changed, "limit": self.page_size}))
        matching: set[str] | None = None
        if self.user_filter.native and raws:
            # A user edited out of the search shows only in the unfiltered listing.
            matching = {str(r["id"]) for r in self._items(
                "api/v1/users", {"search": f"({self.user_filter.native}) and {changed}",
                                 "limit": self.page_size})}
        for raw in raws:
            uid, stamp = str(raw["id"]), str(raw.get("lastUpdated") or "")
            if not self._fresh(f"u:{uid}", stamp, old, delta):
                continue
            if matching is not None and uid not in matching:
                delta.filtered_users.add(uid)
                continue
            delta.users[uid] = self.slim(raw)
            note_seen(delta.seen_at, uid, stamp)

    def _groups(self, since: str, old: FeedPosition, delta: Delta) -> None:
        changed = f'lastUpdated gt "{since}" or lastMembershipUpdated gt "{since}"'
        raws = list(self._items("api/v1/groups", {"filter": changed, "limit": self.page_size}))
        matching: set[str] | None = None
        if self.group_filter.native and raws:
            matching = {str(r["id"]) for r in self._items(
                "api/v1/groups", {"search": f"({self.group_filter.native}) and "
                                            f"({changed})", "limit": self.page_size})}
        for raw in raws:
            gid = str(raw["id"])
            updated = str(raw.get("lastUpdated") or "")
            stamp = str(raw.get("lastMembershipUpdated") or "")
            # Latest stamp first: settle() keeps the entry while either is in the overlap.
            if not self._fresh(f"g:{gid}", f"{max(updated, stamp)}|{updated}|{stamp}", old,
                               delta):
                continue
            name = str((raw.get("profile") or {}).get("name") or gid)
            if (matching is not None and gid not in matching) or \
                    not self.group_filter.keeps(name):
                delta.removed_groups.add(gid)
                continue
            members = sorted(str(u["id"]) for u in self._items(
                f"api/v1/groups/{gid}/users", {"limit": self.page_size}))
            delta.groups[gid] = {"stamp": stamp, "members": members, "name": name}
            note_seen(delta.seen_at, gid, max(updated, stamp))

    def _log(self, since: str, old: FeedPosition, delta: Delta) -> None:
        params: dict[str, Any] | None = {"since": since, "filter": LOG_EVENTS,
                                         "limit": LOG_PAGE}
        target = "api/v1/logs"
        reread: set[str] = set()
        while True:
            resp = self.api.get(target, params)
            events = resp.json()
            if not isinstance(events, list):
                raise IncompleteRead("okta: the System Log answered something other than a "
                                     "JSON array")
            for event in events:
                self._event(event, old, delta, reread)
            link = next_link(link_values(resp))
            # A polling request always links onward; a short page means we are caught up.
            if len(events) < LOG_PAGE or link is None:
                break
            target, params = self.api.relative(link), None
        for uid in sorted(reread - delta.users.keys() - delta.removed_users):
            resp = self.api.get(f"api/v1/users/{uid}", missing_ok=True)
            if resp.status == 404:
                delta.removed_users.add(uid)
            else:
                raw = resp.json()
                delta.users[uid] = self.slim(raw)
                note_seen(delta.seen_at, uid, str(raw.get("lastUpdated") or ""))

    def _event(self, event: Any, old: FeedPosition, delta: Delta, reread: set[str]) -> None:
        if not isinstance(event, dict) or not event.get("uuid"):
            raise IncompleteRead("okta: a System Log event without a uuid")
        kind = str(event.get("eventType") or "")
        if not self._fresh(f"e:{event['uuid']}", str(event.get("published") or ""),
                           old, delta):
            return
        if (event.get("outcome") or {}).get("result") not in (None, "SUCCESS"):
            return
        for target in event.get("target") or []:
            if not isinstance(target, dict) or not target.get("id"):
                continue
            tid, ttype = str(target["id"]), str(target.get("type") or "")
            if ttype == "User" and kind.startswith("user.lifecycle.delete"):
                delta.removed_users.add(tid)
                delta.users.pop(tid, None)
            elif ttype == "User" and kind.startswith("user.lifecycle."):
                reread.add(tid)
            elif ttype == "UserGroup" and kind == "group.lifecycle.delete":
                delta.removed_groups.add(tid)
                delta.groups.pop(tid, None)
            else:
                continue
            note_seen(delta.seen_at, tid, str(event.get("published") or ""))

    # ------------------------------------------------------------------ helpers

    def _fresh(self, key: str, stamp: str, old: FeedPosition, delta: Delta) -> bool:
        """True the first time a key is seen with this stamp (records it either way)."""
        return delta.position.fresh(key, stamp, old)

    def _items(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for page in self.api.pages(path, params):
            for item in page:
                if not isinstance(item, dict) or not item.get("id"):
                    raise IncompleteRead(f"okta: GET {path} returned an entry without an id")
                yield item

    def _sharing(self) -> Sharing:
        return Sharing(self.api, self.budget)


