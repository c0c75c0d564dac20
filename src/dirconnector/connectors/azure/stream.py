"""Entra ID's change stream: the users and groups delta links, polled.

A position is the pair of deltaLinks (delta-query-overview.md, "State tokens"); a poll
is one delta round on each (two requests when nothing changed). Items are merged into
the connector's cached copy of the tenant (cache.py: ``@removed``, ``members@delta``)
and the batch is the difference between the snapshot ``fetch`` would build from the
cache before and after, so its records are exactly what a full read gives, filters,
guests and nesting included. Polls are at least ``poll_interval`` apart; a 429 or 503
is retried by the HTTP client after Graph's Retry-After (throttling.md). A token Graph
no longer knows (410, syncStateNotFound, resyncRequired) raises StreamGap.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import IncompleteRead, TransientError
from ...model import Group, Snapshot, User
from .. import Changes, StreamGap, StreamMode
from .api import DeltaExpired
from .cache import DirectoryCache

if TYPE_CHECKING:
    from .connector import AzureConnector

log = logging.getLogger(__name__)


class AzureStream:
    """Follows one tenant through Graph delta queries (see module docstring)."""

    def __init__(self, connector: AzureConnector) -> None:
        self.connector = connector
        self.poll_interval = connector.settings.poll_interval.total_seconds()
        self._cache: DirectoryCache | None = None
        self._last: Snapshot | None = None
        self._read = -1  # the connector's read the cache was copied from
        self._emails: dict[str, str] | None = None
        """Email -> id of the synced users of ``_last`` (the fast path's duplicate check)."""
        self._last_poll = float("-inf")
        self.polls = 0
        """Delta polls so far (each is one round on users and one on groups)."""
        self.rebuilds = 0
        """Batches that rebuilt the whole snapshot (the rest took the fast path)."""

    def mode(self) -> StreamMode:
        return StreamMode(
            "delta",
            f"Graph delta queries on /users and /groups, polled every {self.poll_interval:g} s",
        )

    def position(self) -> str:
        """ "Sync from now" links (``$deltatoken=latest``): nothing before them is replayed."""
        from .connector import GROUP_DELTA_SELECT, USER_SELECT

        users = self.connector._latest_link("users/delta", USER_SELECT)
        groups = self.connector._latest_link("groups/delta", GROUP_DELTA_SELECT)
        return json.dumps({"users": users, "groups": groups})

    def changes(self, position: str, wait: float) -> Changes:
        links = _parse(position)
        deadline = time.monotonic() + max(wait, 0.0)
        base = self._base()
        while True:
            pause = self._last_poll + self.poll_interval - time.monotonic()
            if pause > 0:
                if time.monotonic() + pause > deadline:
                    time.sleep(max(deadline - time.monotonic(), 0.0))
                    return Changes(position=json.dumps(links))
                time.sleep(pause)
            self._last_poll = time.monotonic()
            self.polls += 1
            try:
                users, users_link = self.connector.graph.delta(links["users"])
                groups, groups_link = self.connector.graph.delta(links["groups"])
            except DeltaExpired as exc:
                raise StreamGap(f"azure: the delta token is no longer valid ({exc})") from exc
            except IncompleteRead as exc:
                # The client retried a 429/503 for as long as it may and gave up: the next
                # poll waits at least the Retry-After Graph sent last (throttling.md).
                cause = exc.__cause__
                if isinstance(cause, TransientError) and cause.retry_after:
                    wait_more = max(cause.retry_after - self.poll_interval, 0.0)
                    self._last_poll = time.monotonic() + wait_more
                raise
            links = {"users": users_link, "groups": groups_link}
            if users or groups:
                return self._apply(base, users, groups, json.dumps(links))
            if time.monotonic() >= deadline:
                return Changes(position=json.dumps(links))

    def close(self) -> None:
        """Nothing to drop: a poll is a pair of requests on the client's pooled connections."""

    # ------------------------------------------------------------ internals

    def _base(self) -> tuple[DirectoryCache, Snapshot]:
        """The cached tenant and its snapshot, as the connector's last read left them."""
        if self._cache is None or self._last is None or self._read != self.connector.reads:
            if self.connector.cache is None or self.connector.last_snapshot is None:
                # No read in this process yet (a resumed stream): list the tenant. The
                # stream replays from the stored position, and every object a delta item
                # names goes into the batch, so nothing changed since is lost.
                from ...state_space import ConnectorState

                self.connector.fetch(ConnectorState(force_full=True))
            cache, snap = self.connector.cache, self.connector.last_snapshot
            assert cache is not None and snap is not None
            self._read = self.connector.reads
            self._cache = DirectoryCache.from_json(cache.to_json())
            self._last = snap
            self._emails = None
        assert self._cache is not None
        return self._cache, self._last

    def _fast(
        self,
        cache: DirectoryCache,
        before: Snapshot,
        known: set[str],
        named_users: set[str],
        named_groups: set[str],
        position: str,
    ) -> Changes | None:
        """The batch without rebuilding the whole snapshot (O(changes + groups)), or None
        when only a rebuild is exact: scope filters that ask Graph (include_groups,
        exclude_groups, administrative_unit), duplicate emails, or a known user who
        becomes synced or stops being synced (every group holding it changes)."""
        c, s = self.connector, self.connector.settings
        if s.include_groups or s.exclude_groups or s.administrative_unit:
            return None
        if any(x.reason in FAST_SKIPS for x in before.skipped):
            return None
        records = [c.map_user(uid, cache.users[uid]) for uid in named_users if uid in cache.users]
        mapped = [r for r in records if isinstance(r, User)]
        mini = Snapshot.build(mapped, (), [r for r in records if not isinstance(r, User)])
        if any(x.reason in FAST_SKIPS for x in mini.skipped):
            return None
        if self._emails is None:
            self._emails = {u.email: k for k, u in before.users.items()}
        emails = self._emails
        for uid in named_users:
            if uid in known and (uid in before.users) != (uid in mini.users):
                return None
        for uid, u in mini.users.items():
            owner = emails.get(u.email)
            if owner is not None and owner != uid:
                return None
        users = dict(before.users)
        for uid, u in mini.users.items():
            old = users.get(uid)
            if old is not None and emails.get(old.email) == uid:
                del emails[old.email]
            users[uid] = u
            emails[u.email] = uid
        kept = {gid for gid, g in cache.groups.items() if c.group_filter.keeps(g.name, gid)}
        touched = _up(named_groups, _parents(cache))
        made = [
            Group(
                gid,
                cache.groups[gid].name or gid,
                frozenset(members & users.keys()),
                frozenset(subs),
            )
            for gid, (members, subs) in cache.effective(kept, touched).items()
        ]
        groups_now = Snapshot.build((), made).groups
        changed_groups = {
            k: g for k, g in groups_now.items() if k in named_groups or before.groups.get(k) != g
        }
        removed_groups = {gid for gid in touched if gid in before.groups and gid not in kept}
        groups = {k: g for k, g in before.groups.items() if k not in removed_groups}
        groups.update(groups_now)
        old_skips = set(before.skipped)
        new_skips = tuple(x for x in mini.skipped if x not in old_skips)
        self._last = replace(before, users=users, groups=groups, skipped=before.skipped + new_skips)
        log.info(
            "azure stream: %d users, %d groups changed, %d groups removed",
            len(mini.users),
            len(changed_groups),
            len(removed_groups),
        )
        return Changes(
            position=position,
            users=mini.users,
            groups=changed_groups,
            removed_groups=frozenset(removed_groups),
            skipped=new_skips,
        )

    def _apply(
        self,
        base: tuple[DirectoryCache, Snapshot],
        users: list[dict[str, Any]],
        groups: list[dict[str, Any]],
        position: str,
    ) -> Changes:
        """Every object a delta item names, whole, plus what that changed elsewhere
        (scope filters, groups seen through a filtered-out nested group): the snapshot
        before and after the merge are compared for those."""
        cache, before = base
        known = set(cache.users)
        cache.merge_users(users)
        cache.merge_groups(groups)
        named_users, gone_users = _ids(users)
        named_groups, gone_groups = _ids(groups)
        fast = self._fast(cache, before, known, named_users, named_groups, position)
        if fast is not None:
            return fast
        self.rebuilds += 1
        after = self.connector._snapshot(cache, time.time())
        self._last, self._emails = after, None
        changed_users = {
            k: u for k, u in after.users.items() if k in named_users or before.users.get(k) != u
        }
        changed_groups = {
            k: g for k, g in after.groups.items() if k in named_groups or before.groups.get(k) != g
        }
        old_skips = set(before.skipped)
        batch = Changes(
            position=position,
            users=changed_users,
            groups=changed_groups,
            removed_users=frozenset((before.users.keys() | gone_users) - after.users.keys()),
            removed_groups=frozenset((before.groups.keys() | gone_groups) - after.groups.keys()),
            skipped=tuple(s for s in after.skipped if s not in old_skips),
        )
        log.info(
            "azure stream: %d user and %d group items: %d users, %d groups changed, %d removed",
            len(users),
            len(groups),
            len(batch.users),
            len(batch.groups),
            len(batch.removed_users) + len(batch.removed_groups),
        )
        return batch


FAST_SKIPS = frozenset({"duplicate email"})


def _parents(cache: DirectoryCache) -> dict[str, set[str]]:
    """Group id -> the groups that hold it as a direct subgroup."""
    out: dict[str, set[str]] = {}
    for gid, g in cache.groups.items():
        for sub in g.subgroups:
            out.setdefault(sub, set()).add(gid)
    return out


def _ids(items: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The ids delta items name, and those among them Graph marks ``@removed``."""
    named = {str(i.get("id")) for i in items if i.get("id")}
    gone = {str(i.get("id")) for i in items if i.get("id") and isinstance(i.get("@removed"), dict)}
    return named, gone


def _up(start: set[str], parents: dict[str, set[str]]) -> set[str]:
    """``start`` and every group above it."""
    seen = set(start)
    todo = list(start)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _parse(position: str) -> dict[str, str]:
    try:
        links = json.loads(position)
        if not (
            isinstance(links, dict)
            and isinstance(links.get("users"), str)
            and isinstance(links.get("groups"), str)
        ):
            raise ValueError("not a pair of delta links")
    except ValueError as exc:
        raise StreamGap(f"azure: {position[:40]!r} is not a Graph delta position") from exc
    return {"users": links["users"], "groups": links["groups"]}


__all__ = ["AzureStream"]
