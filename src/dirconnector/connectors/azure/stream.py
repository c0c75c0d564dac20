"""Entra ID's change stream: the users and groups delta links, polled.

A position is the pair of deltaLinks (delta-query-overview.md, "State tokens"); a poll
is one delta round on each (two requests when nothing changed). Items are merged into
the connector's cached copy of the tenant (cache.py: ``@removed``, ``members@delta``,
and ``manager@delta`` when the mapping reads the manager: the users link then selects
``manager``) and the batch is the difference between the snapshot ``fetch`` would build
from the cache before and after, so its records are exactly what a full read gives,
filters, guests and nesting included. It is built from the named objects and the groups
above them (index.py) unless only a whole rebuild is exact (see ``_fast``). Polls are
at least ``poll_interval`` apart; a 429 or 503 is retried by the HTTP client after
Graph's Retry-After (throttling.md). A token Graph no longer knows (410,
syncStateNotFound, resyncRequired) raises StreamGap.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from ...errors import IncompleteRead, TransientError
from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, Snapshot, User
from .. import Changes, StreamGap, StreamMode
from .api import DeltaExpired
from .cache import DirectoryCache, merge_managers
from .index import Nesting

if TYPE_CHECKING:
    from .connector import AzureConnector

log = logging.getLogger(__name__)


class AzureStream:
    """Follows one tenant through Graph delta queries (see module docstring)."""

    def __init__(self, connector: AzureConnector) -> None:
        self.connector = connector
        self.poll_interval = connector.settings.poll_interval.total_seconds()
        self._cache: DirectoryCache | None = None
        self._read = -1  # the connector's read the cache was copied from
        self._nesting = Nesting(DirectoryCache(), lambda name, gid: True)
        self._users: dict[str, User] = {}
        """The synced users as a full read of the cache would give them."""
        self._groups: dict[str, Group] = {}
        """The synced groups (flattened through filtered-out nested groups), likewise."""
        self._skip_set: set[Skipped] = set()
        """The skipped entries of the snapshot ``_users`` and ``_groups`` belong to."""
        self._emails: dict[str, str] = {}
        """Email -> id of ``_users`` (the fast path's duplicate check)."""
        self._dup = False
        """The last rebuild skipped a duplicate email: only a rebuild can tell when it ends."""
        self._last_poll = float("-inf")
        self.polls = 0
        """Delta polls so far (each is one round on users and one on groups)."""
        self.rebuilds = 0
        """Batches that rebuilt the whole snapshot (the rest took the fast path)."""
        self.fast_path = True
        """False: rebuild every batch (tests compare the fast path with the rebuild)."""

    def mode(self) -> StreamMode:
        return StreamMode(
            "delta",
            f"Graph delta queries on /users and /groups, polled every {self.poll_interval:g} s",
        )

    def position(self) -> str:
        """ "Sync from now" links (``$deltatoken=latest``): nothing before them is replayed."""
        from .connector import GROUP_DELTA_SELECT

        users = self.connector._latest_link("users/delta", self.connector.stream_user_select)
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

    def _base(self) -> DirectoryCache:
        """The cached tenant and the stream's copy of its snapshot, as the connector's last
        read left them (copied once per read; batches then change the copies in place)."""
        if self._cache is None or self._read != self.connector.reads:
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
            assert self._cache is not None
            self._nesting = Nesting(self._cache, self.connector.group_filter.keeps)
            self._adopt(snap, copy=True)
        return self._cache

    def _adopt(self, snap: Snapshot, *, copy: bool) -> None:
        """Take ``snap`` as the state batches are compared with (``copy``: it is shared)."""
        self._users = dict(snap.users) if copy or not isinstance(snap.users, dict) else snap.users
        self._groups = (
            dict(snap.groups) if copy or not isinstance(snap.groups, dict) else snap.groups
        )
        self._skip_set = set(snap.skipped)
        self._emails = {u.email: k for k, u in self._users.items()}
        self._dup = any(x.reason in FAST_SKIPS for x in snap.skipped)

    def _fast(
        self,
        cache: DirectoryCache,
        named_users: set[str],
        gone_users: set[str],
        named_groups: set[str],
        gone_groups: set[str],
        earlier_skips: list[Skipped],
        position: str,
    ) -> Changes | None:
        """The batch without rebuilding the whole snapshot (O(what changed)), or None when
        only a rebuild is exact: scope filters that ask Graph (include_groups,
        exclude_groups, administrative_unit) and duplicate emails. A user who becomes
        synced or stops being synced (created, deleted, disabled guest, filtered out)
        changes the groups that hold it and those above them (the reverse index)."""
        s = self.connector.settings
        if s.include_groups or s.exclude_groups or s.administrative_unit or self._dup:
            return None
        users, groups, emails, nest = self._users, self._groups, self._emails, self._nesting
        mini, group_skips = self._records(cache, named_users, named_groups)
        if any(x.reason in FAST_SKIPS for x in mini.skipped):
            return None
        for uid, u in mini.users.items():
            owner = emails.get(u.email)
            if owner is not None and owner != uid:
                return None
        # From here on the stream's copy changes in place: no return without a batch.
        left = {uid for uid in named_users if uid in users and uid not in mini.users}
        entered = {uid for uid in mini.users if uid not in users}
        for uid in left:
            old = users.pop(uid)
            if emails.get(old.email) == uid:
                del emails[old.email]
        for uid, u in mini.users.items():
            prev = users.get(uid)
            if prev is not None and emails.get(prev.email) == uid:
                del emails[prev.email]
            users[uid] = u
            emails[u.email] = uid
        kept = nest.kept
        touched = nest.above(named_groups | nest.holding(left | entered))
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
            k: g for k, g in groups_now.items() if k in named_groups or groups.get(k) != g
        }
        removed_groups = {
            gid
            for gid in touched | gone_groups
            if (gid in groups or gid in gone_groups) and gid not in kept
        }
        for gid in removed_groups:
            groups.pop(gid, None)
        groups.update(changed_groups)
        # A skip is new when the last snapshot lacked it, as a rebuild tells; the named
        # objects' skips of before the merge are then replaced by their skips of now.
        skips = [*mini.skipped, *group_skips]
        new_skips = [x for x in skips if x not in self._skip_set]
        self._skip_set.difference_update(earlier_skips)
        self._skip_set.update(skips)
        removed_users = left | (gone_users - mini.users.keys())
        log.info(
            "azure stream: %d users, %d groups changed, %d users, %d groups removed",
            len(mini.users),
            len(changed_groups),
            len(removed_users),
            len(removed_groups),
        )
        return Changes(
            position=position,
            users=mini.users,
            groups=changed_groups,
            removed_users=frozenset(removed_users),
            removed_groups=frozenset(removed_groups),
            skipped=tuple(new_skips),
        )

    def _records(
        self, cache: DirectoryCache, uids: set[str], gids: set[str]
    ) -> tuple[Snapshot, list[Skipped]]:
        """These users as a full read of ``cache`` maps them, and these groups' skips."""
        c = self.connector
        records = [c.map_user(uid, cache.users[uid]) for uid in uids if uid in cache.users]
        mapped = [r for r in records if isinstance(r, User)]
        mini = Snapshot.build(mapped, (), [r for r in records if not isinstance(r, User)])
        group_skips = [
            Skipped("group", cache.groups[gid].name or gid, "filtered out", "group_filter")
            for gid in gids
            if gid in cache.groups and gid not in self._nesting.kept
        ]
        return mini, group_skips

    def _apply(
        self,
        cache: DirectoryCache,
        users: list[dict[str, Any]],
        groups: list[dict[str, Any]],
        position: str,
    ) -> Changes:
        """Every object a delta item names, whole, plus what that changed elsewhere
        (scope filters, groups seen through a filtered-out nested group, the groups of a
        user who enters or leaves the synced set)."""
        named_users, gone_users = _ids(users)
        named_groups, gone_groups = _ids(groups)
        earlier, earlier_groups = self._records(cache, named_users, named_groups)
        cache.merge_users(users, self.connector._extra_select)
        if MANAGER_SOURCE in self.connector.extra_attributes:
            merge_managers(self.connector._manager_of, users)
        self._nesting.merge_groups(cache, groups)
        fast = (
            self._fast(
                cache,
                named_users,
                gone_users,
                named_groups,
                gone_groups,
                [*earlier.skipped, *earlier_groups],
                position,
            )
            if self.fast_path
            else None
        )
        if fast is not None:
            return fast
        self.rebuilds += 1
        after = self.connector._snapshot(cache, time.time())
        before_users, before_groups = self._users, self._groups
        changed_users = {
            k: u for k, u in after.users.items() if k in named_users or before_users.get(k) != u
        }
        changed_groups = {
            k: g for k, g in after.groups.items() if k in named_groups or before_groups.get(k) != g
        }
        old_skips = self._skip_set
        batch = Changes(
            position=position,
            users=changed_users,
            groups=changed_groups,
            removed_users=frozenset((before_users.keys() | gone_users) - after.users.keys()),
            removed_groups=frozenset((before_groups.keys() | gone_groups) - after.groups.keys()),
            skipped=tuple(s for s in after.skipped if s not in old_skips),
        )
        self._adopt(after, copy=False)
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


def _ids(items: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The ids delta items name, and those among them Graph marks ``@removed``."""
    named = {str(i.get("id")) for i in items if i.get("id")}
    gone = {str(i.get("id")) for i in items if i.get("id") and isinstance(i.get("@removed"), dict)}
    return named, gone


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
