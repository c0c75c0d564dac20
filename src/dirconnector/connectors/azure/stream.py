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
from typing import TYPE_CHECKING, Any

from ...model import Snapshot
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
        self._last_poll = float("-inf")
        self.polls = 0
        """Delta polls so far (each is one round on users and one on groups)."""

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
        assert self._cache is not None
        return self._cache, self._last

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
        cache.merge_users(users)
        cache.merge_groups(groups)
        after = self.connector._snapshot(cache, time.time())
        self._last = after
        named_users, gone_users = _ids(users)
        named_groups, gone_groups = _ids(groups)
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
