"""Reverse indexes over the cached tenant, kept up to date as delta rounds merge.

The change stream needs, for one changed user or group, the groups whose flattened
membership it can change: the groups that hold the user directly, and every group above
those (through nested groups, kept or filtered out). Walking every group of the cache
for that costs O(groups) per batch; these indexes make it O(what changed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .cache import DirectoryCache


class Nesting:
    """Who holds whom in a :class:`DirectoryCache`, and which groups the filter keeps."""

    def __init__(self, cache: DirectoryCache, keeps: Callable[[str, str], bool]) -> None:
        self.keeps = keeps
        """The group filter: (display name, id) -> synced."""
        self.member_of: dict[str, set[str]] = {}
        """User id -> the groups that hold it as a direct member."""
        self.parents: dict[str, set[str]] = {}
        """Group id -> the groups that hold it as a direct subgroup."""
        self.kept: set[str] = set()
        """Groups of the cache the group filter keeps."""
        for gid, g in cache.groups.items():
            self._link(gid, g.members, g.subgroups)
            if keeps(g.name, gid):
                self.kept.add(gid)

    def merge_groups(self, cache: DirectoryCache, items: Iterable[Mapping[str, Any]]) -> None:
        """``cache.merge_groups(items)``, with the indexes following it (O(named groups))."""
        items = list(items)
        named = {str(i.get("id")) for i in items if i.get("id")}
        old = {
            gid: (set(g.members), set(g.subgroups))
            for gid in named
            if (g := cache.groups.get(gid)) is not None
        }
        cache.merge_groups(items)
        for gid in named:
            was_members, was_subs = old.get(gid, (set(), set()))
            g = cache.groups.get(gid)
            members, subs = (g.members, g.subgroups) if g is not None else (set(), set())
            self._unlink(gid, was_members - members, was_subs - subs)
            self._link(gid, members - was_members, subs - was_subs)
            if g is not None and self.keeps(g.name, gid):
                self.kept.add(gid)
            else:
                self.kept.discard(gid)

    def above(self, start: Iterable[str]) -> set[str]:
        """``start`` and every group that holds one of them, however deep."""
        seen = set(start)
        todo = list(seen)
        while todo:
            for parent in self.parents.get(todo.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def holding(self, users: Iterable[str]) -> set[str]:
        """The groups that hold any of ``users`` directly."""
        out: set[str] = set()
        for uid in users:
            out |= self.member_of.get(uid, set())
        return out

    def _link(self, gid: str, members: Iterable[str], subs: Iterable[str]) -> None:
        for uid in members:
            self.member_of.setdefault(uid, set()).add(gid)
        for sub in subs:
            self.parents.setdefault(sub, set()).add(gid)

    def _unlink(self, gid: str, members: Iterable[str], subs: Iterable[str]) -> None:
        for uid in members:
            held = self.member_of.get(uid)
            if held is not None:
                held.discard(gid)
                if not held:
                    del self.member_of[uid]
        for sub in subs:
            held = self.parents.get(sub)
            if held is not None:
                held.discard(gid)
                if not held:
                    del self.parents[sub]
