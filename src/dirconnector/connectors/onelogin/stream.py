"""The onelogin change feed, and the users and groups it is merged into.

OneLogin API reference (developers.onelogin.com):

- api-docs/2/users/list-users: ``GET /api/2/users?updated_since=<t>`` returns the users
  changed after ``t`` (status, names, email, ``group_id`` included), cursor-paged.
- api-docs/1/events/get-events: ``GET /api/1/events?since=<t>&event_type_id=a,b&sort=+id``
  (up to 50 per page, the v1 ``pagination`` envelope; any of the Read Users / Read All
  scopes). A role assignment does not move the user's ``updated_at``, so role membership
  changes come from here (``role_id`` on the event), and so do deletions (a deleted user
  is in no listing). The type ids are looked up by name once from
  api-docs/1/events/event-types (``GET /api/1/events/types``; cache it, the docs say):
  a user's role assignment or removal is a type named ``USER_..ROLE..`` (the sample shows
  4 ``USER_ASSIGNED_ROLE``), a deletion ``USER_DELETED``.
- api-docs/2/roles/list-roles and get-role-users: roles are listed each poll (one page
  for up to 650 roles) to see roles created, renamed and deleted; a changed role's
  members are read whole.
- ``groups_from = "groups"``: a user's one group is its ``group_id``; a move moves
  ``updated_at``; groups (``/api/1/groups``) are listed each poll for renames/deletions.

Position, overlap, de-duplication and gaps: feedkit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
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
from .api import LABEL, OneLoginApi

PREFIX = "onelogin-feed:1:"
ROLES_PAGE = 650
CACHE_KEY = "onelogin.cache.v1"

Slim = dict[str, Any]
"""The fields of a user the connector maps (id, names, status, group_id, the email field)."""


@dataclass
class ReadCache:
    """Users and groups as of the last read, so a feed read can return the whole state."""

    fingerprint: str
    full_at: float = 0.0
    position: str = ""
    users: dict[str, Slim] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Group (role) id -> {"name": name, "members": [user ids]} as a full read gives them."""

    @classmethod
    def load(cls, value: Any, expected: str) -> ReadCache | None:
        if not isinstance(value, dict) or value.get("fingerprint") != expected:
            return None
        try:
            return cls(expected, float(value["full_at"]), str(value["position"]),
                       dict(value["users"]), dict(value["groups"]))
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "full_at": self.full_at,
                "position": self.position, "users": self.users, "groups": self.groups}


@dataclass
class Delta:
    position: FeedPosition
    users: dict[str, Slim] = field(default_factory=dict)
    removed_users: set[str] = field(default_factory=set)
    filtered_users: set[str] = field(default_factory=set)
    """Users changed so that the user_filter query no longer returns them."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_groups: set[str] = field(default_factory=set)
    seen_at: dict[str, float] = field(default_factory=dict)

    def apply(self, cache: ReadCache) -> ReadCache:
        """The cache with this poll merged in (a deleted user leaves its groups)."""
        users = dict(cache.users)
        users.update(self.users)
        for uid in self.removed_users | self.filtered_users:
            users.pop(uid, None)
        groups = dict(cache.groups)
        groups.update(self.groups)
        for gid in self.removed_groups:
            groups.pop(gid, None)
        gone = self.removed_users | self.filtered_users
        if gone:
            for gid, entry in groups.items():
                if gone.intersection(entry["members"]):
                    groups[gid] = {**entry, "members": [m for m in entry["members"]
                                                        if m not in gone]}
        return ReadCache(cache.fingerprint, cache.full_at, self.position.dump(PREFIX), users,
                         groups)


def server_time(date: str | None, clock: Callable[[], float]) -> datetime:
    try:
        return parsedate_to_datetime(date or "").astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(clock(), UTC)


class OneLoginFeed:
    """One poll of users, events and roles (or groups), within a share of the rate limit."""

    def __init__(self, api: OneLoginApi, *, slim: Callable[[Mapping[str, Any]], Slim],
                 user_query: dict[str, str], role_query: dict[str, str],
                 group_filter: SetFilter, groups_from: str, overlap: timedelta,
                 share: float, retention: timedelta, clock: Callable[[], float]) -> None:
        self.api = api
        self.slim = slim
        self.user_query = user_query
        self.role_query = role_query
        self.group_filter = group_filter
        self.groups_from = groups_from
        self.overlap = overlap
        self.retention = retention
        self.clock = clock
        self.budget = ShareBudget(share, LABEL, clock)
        self._types: tuple[frozenset[int], frozenset[int]] | None = None

    def position_now(self) -> FeedPosition:
        with Sharing(self.api, self.budget):
            self.api.start_clock()
            self.api.get("/api/2/users", {"limit": 1}, "the server's time")
            started = server_time(self.api.first_date, self.clock)
            return FeedPosition(iso_ms(started), {}, {"groups": self._group_names()})

    def read(self, position: FeedPosition, cache: ReadCache | None) -> Delta:
        check_age(position, self.clock(), self.retention, self.overlap, LABEL, "Events API")
        since = iso_ms(parse_time(position.at) - self.overlap)
        delta = Delta(FeedPosition(position.at))
        try:
            with Sharing(self.api, self.budget):
                self.api.start_clock()
                self._users(since, position, delta)
                started = server_time(self.api.first_date, self.clock)
                check_clock(position, started, LABEL)
                roles = self._events(since, position, delta)
                self._groups(position, delta, roles, cache)
        except IncompleteRead as exc:
            raise StreamGap(f"{LABEL}: a feed query failed, events may be lost: {exc}") from exc
        delta.position.settle(started, self.overlap)
        return delta

    # ------------------------------------------------------------------ sources

    def _users(self, since: str, old: FeedPosition, delta: Delta) -> None:
        query = {**self.user_query, "updated_since": since}
        rows = [r for page in self.api.v2_pages("/api/2/users", query, "changed users")
                for r in page]
        matching: set[str] | None = None
        if self.user_query and rows:
            # A user edited out of the query shows only in the unfiltered listing.
            matching = {str(r.get("id")) for r in rows}
            rows = [r for page in self.api.v2_pages(
                "/api/2/users", {"updated_since": since}, "changed users (unfiltered)")
                for r in page]
        for raw in rows:
            uid, stamp = str(raw.get("id")), str(raw.get("updated_at") or "")
            if not delta.position.fresh(f"u:{uid}", stamp, old):
                continue
            if matching is not None and uid not in matching:
                delta.filtered_users.add(uid)
                continue
            delta.users[uid] = self.slim(raw)
            note_seen(delta.seen_at, uid, stamp)

    def _event_types(self) -> tuple[frozenset[int], frozenset[int]]:
        """(role membership type ids, user deletion type ids), by name, looked up once."""
        if self._types is None:
            roles: set[int] = set()
            deletes: set[int] = set()
            for page in self.api.v1_pages("/api/1/events/types", "event types"):
                for row in page:
                    name = str(row.get("name") or "").upper()
                    if not isinstance(row.get("id"), int):
                        continue
                    if name.startswith("USER_") and "ROLE" in name and "ASSUM" not in name:
                        roles.add(row["id"])
                    elif name == "USER_DELETED":
                        deletes.add(row["id"])
            if not deletes:
                raise StreamGap(f"{LABEL}: /api/1/events/types names no USER_DELETED type; "
                                "deletions could not be followed")
            self._types = frozenset(roles), frozenset(deletes)
        return self._types

    def _events(self, since: str, old: FeedPosition, delta: Delta) -> set[str]:
        """Deleted users into ``delta``; the ids of roles whose membership changed."""
        role_types, delete_types = self._event_types()
        wanted = sorted(delete_types | (role_types if self.groups_from == "roles" else set()))
        query = {"since": since, "event_type_id": ",".join(map(str, wanted)), "sort": "+id"}
        roles: set[str] = set()
        for page in self.api.v1_pages("/api/1/events", "events", query):
            for event in page:
                eid, stamp = event.get("id"), str(event.get("created_at") or "")
                if eid is None or not delta.position.fresh(f"e:{eid}", stamp, old):
                    continue
                kind, uid, rid = event.get("event_type_id"), event.get("user_id"), \
                    event.get("role_id")
                if kind in delete_types and uid is not None:
                    delta.removed_users.add(str(uid))
                    delta.users.pop(str(uid), None)
                    note_seen(delta.seen_at, str(uid), stamp)
                elif kind in role_types and rid is not None:
                    roles.add(str(rid))
                    note_seen(delta.seen_at, str(rid), stamp)
        return roles

    def _group_names(self) -> dict[str, str]:
        if self.groups_from == "roles":
            # list-roles: "Max page limit is 650": one request for most accounts.
            pages = self.api.v2_pages("/api/2/roles", self.role_query, "roles", ROLES_PAGE)
        else:
            pages = self.api.v1_pages("/api/1/groups", "groups")
        return {str(r["id"]): str(r.get("name") or "") for page in pages for r in page
                if r.get("id") is not None}

    def _groups(self, old: FeedPosition, delta: Delta, changed_roles: set[str],
                cache: ReadCache | None) -> None:
        names = self._group_names()
        before: dict[str, str] = dict(old.extra.get("groups") or {})
        delta.position.extra = {"groups": names}
        for gid in before.keys() - names.keys():
            delta.removed_groups.add(gid)
        if self.groups_from == "roles":
            known = None if cache is None else (cache.users.keys() | delta.users.keys()) \
                - delta.removed_users - delta.filtered_users
            for rid, name in names.items():
                if before.get(rid) == name and rid not in changed_roles:
                    continue
                if not self.group_filter.keeps(name):
                    if rid in before:
                        delta.removed_groups.add(rid)
                    continue
                members = {str(row["id"]) for page in self.api.v2_pages(
                    f"/api/2/roles/{rid}/users", {}, f"members of role {name!r}")
                    for row in page if "id" in row and row.get("assigned", True) is not False}
                if known is not None:
                    members &= known
                delta.groups[rid] = {"name": name, "members": sorted(members)}
            return
        # OneLogin groups: members are the users whose group_id names the group.
        if cache is None:
            raise StreamGap(f"{LABEL}: groups_from = 'groups' needs the last read to follow "
                            "memberships")
        users = dict(cache.users)
        users.update(delta.users)
        for uid in delta.removed_users | delta.filtered_users:
            users.pop(uid, None)
        moved = {str(s.get("group_id")) for s in _values(cache.users, delta.users.keys()
                                                         | delta.removed_users
                                                         | delta.filtered_users)}
        moved |= {str(s.get("group_id")) for s in delta.users.values()}
        for gid, name in names.items():
            if before.get(gid) == name and gid not in moved:
                continue
            if not self.group_filter.keeps(name):
                if gid in before:
                    delta.removed_groups.add(gid)
                continue
            delta.groups[gid] = {"name": name, "members": sorted(
                uid for uid, s in users.items() if str(s.get("group_id")) == gid)}


def _values(table: Mapping[str, Slim], keys: Iterable[str]) -> list[Slim]:
    return [table[k] for k in keys if k in table]


