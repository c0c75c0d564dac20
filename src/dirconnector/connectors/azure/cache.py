"""The cached copy of the tenant that delta rounds are merged into, kept as JSON in state.

The cache holds every user and group the app can see, unfiltered, so that changing a
filter never needs a new read. Merge rules (delta-query-users.md, delta-query-groups.md):

* an object without ``@removed`` is created or updated with the properties it carries;
* ``@removed`` with reason ``changed`` (soft-deleted, restorable for 30 days) and
  ``deleted`` (gone for good) both take the object out of the desired state;
* ``members@delta`` lists added members, and removed ones carrying ``@removed``; the same
  group may appear on several pages, so entries are merged, never replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

USER_PROPERTIES = ("mail", "userPrincipalName", "displayName", "givenName", "surname",
                   "accountEnabled", "userType")
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"


@dataclass
class CachedGroup:
    name: str = ""
    members: set[str] = field(default_factory=set)       # user ids
    subgroups: set[str] = field(default_factory=set)     # group ids


@dataclass
class DirectoryCache:
    """Users (their Graph properties) and groups (name, direct members) by object id."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, CachedGroup] = field(default_factory=dict)

    # ------------------------------------------------------------ full reads

    def put_user(self, item: Mapping[str, Any], extra: tuple[str, ...] = ()) -> None:
        self.users[str(item["id"])] = {k: item.get(k) for k in (*USER_PROPERTIES, *extra)}

    def put_group(self, gid: str, name: str, members: Iterable[Mapping[str, Any]]) -> None:
        group = CachedGroup(name)
        for m in members:
            _add_member(group, m)
        self.groups[gid] = group

    # ------------------------------------------------------------ delta rounds

    def merge_users(self, items: Iterable[Mapping[str, Any]],
                    extra: tuple[str, ...] = ()) -> dict[str, int]:
        """Apply a users delta round; returns counts by outcome for the log."""
        counts = {"changed": 0, "soft-deleted": 0, "deleted": 0}
        for item in items:
            uid = str(item.get("id") or "")
            if not uid:
                continue
            removed = item.get("@removed")
            if isinstance(removed, Mapping):
                self.users.pop(uid, None)
                counts["soft-deleted" if removed.get("reason") == "changed" else "deleted"] += 1
                continue
            user = self.users.setdefault(uid, {k: None for k in (*USER_PROPERTIES, *extra)})
            user.update({k: item[k] for k in (*USER_PROPERTIES, *extra) if k in item})
            counts["changed"] += 1
        return counts

    def merge_groups(self, items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Apply a groups delta round (members@delta merged into the cached members)."""
        counts = {"changed": 0, "deleted": 0, "member changes": 0}
        for item in items:
            gid = str(item.get("id") or "")
            if not gid:
                continue
            if isinstance(item.get("@removed"), Mapping):
                self.groups.pop(gid, None)
                counts["deleted"] += 1
                continue
            group = self.groups.setdefault(gid, CachedGroup())
            if "displayName" in item:
                group.name = str(item.get("displayName") or "")
            counts["changed"] += 1
            for m in item.get("members@delta") or ():
                counts["member changes"] += 1
                if isinstance(m.get("@removed"), Mapping):
                    mid = str(m.get("id"))
                    group.members.discard(mid)
                    group.subgroups.discard(mid)
                else:
                    _add_member(group, m)
        return counts

    # ------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users,
                "groups": {gid: {"name": g.name, "members": sorted(g.members),
                                 "subgroups": sorted(g.subgroups)}
                           for gid, g in self.groups.items()}}

    @classmethod
    def from_json(cls, data: Any) -> DirectoryCache | None:
        """The cache from state, or None when it is missing or not in the expected shape."""
        try:
            users = {str(k): dict(v) for k, v in data["users"].items()}
            groups = {str(k): CachedGroup(str(v["name"]), set(v["members"]), set(v["subgroups"]))
                      for k, v in data["groups"].items()}
        except (KeyError, TypeError, AttributeError, ValueError):
            return None
        return cls(users, groups)

    # ------------------------------------------------------------ nesting

    def effective(self, kept: set[str], only: set[str] | None = None,
                  ) -> dict[str, tuple[set[str], set[str]]]:
        """Members of each kept group, with groups that are not kept looked through.

        A kept group nested under another keeps its place as a subgroup; the users of a
        nested group that is filtered out become direct members, so filtering a group
        out never shrinks the membership of the groups that contain it. ``only``: just
        these of the kept groups (a change stream recomputing the groups it touched).
        """
        out: dict[str, tuple[set[str], set[str]]] = {}
        for gid in kept if only is None else kept & only:
            users = set(self.groups[gid].members)
            subs: set[str] = set()
            seen = {gid}
            todo = list(self.groups[gid].subgroups)
            while todo:
                child = todo.pop()
                if child in seen or child not in self.groups:
                    continue
                seen.add(child)
                if child in kept:
                    subs.add(child)
                else:
                    users |= self.groups[child].members
                    todo.extend(self.groups[child].subgroups)
            out[gid] = (users, subs)
        return out


def merge_managers(manager_of: dict[str, str], items: Iterable[Mapping[str, Any]]) -> int:
    """Apply the ``manager@delta`` annotations of a users delta round to ``manager_of``
    (user id -> manager id); returns how many users' managers changed.

    delta-query-overview.md: ``$select=manager`` tracks the manager relationship, which
    comes as ``manager@delta``: the manager as a ``{"@odata.type", "id"}`` reference, and
    a manager taken away as a reference with ``@removed``. An item without the annotation
    left its manager as it was; a user ``@removed`` has none.
    """
    changed = 0
    for item in items:
        uid = str(item.get("id") or "")
        if not uid:
            continue
        if isinstance(item.get("@removed"), Mapping):
            manager_of.pop(uid, None)
            continue
        refs = item.get("manager@delta")
        if not isinstance(refs, list):
            continue
        alive = [str(r["id"]) for r in refs
                 if isinstance(r, Mapping) and r.get("id") and "@removed" not in r]
        gone = {str(r.get("id")) for r in refs if isinstance(r, Mapping) and "@removed" in r}
        if alive:
            manager_of[uid] = alive[-1]
        elif manager_of.get(uid) in gone:
            del manager_of[uid]
        else:
            continue
        changed += 1
    return changed


def _add_member(group: CachedGroup, member: Mapping[str, Any]) -> None:
    """Users become members and groups subgroups; devices, contacts and apps are ignored."""
    kind = member.get("@odata.type")
    mid = str(member.get("id") or "")
    if not mid:
        return
    if kind == USER_TYPE:
        group.members.add(mid)
    elif kind == GROUP_TYPE:
        group.subgroups.add(mid)
