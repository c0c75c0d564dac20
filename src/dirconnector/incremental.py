"""Incremental plans: merge a change batch into a snapshot, and cut both sides down to
what the batch touches, so one directory change costs a few records, not a full diff.

Pure: no I/O, no clock, no logging. ``watch.py`` drives it.

The cut keeps the full diff's answer for the objects it holds: every directory user
whose account is in the cut is in it too (so nobody is revoked as "missing" for
being left out), groups carry their flattened membership, and every skipped entry is
kept (its account stays as it is, as in a full run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .connectors import Changes
from .model import Group, Snapshot, User

CUT = "watch"
"""``info["cut"]`` of a server snapshot cut down to a batch: a target applies a plan made
from it without reading the whole server to check it (the records were just read)."""

__all__ = ["Affected", "affected", "combine", "cut_current", "cut_desired", "merge"]


def merge(snapshot: Snapshot, changes: Changes) -> Snapshot:
    """``snapshot`` with ``changes`` applied: what a full read would give, as far as the
    batch can tell (an entry that stops being a duplicate of an unchanged one is only
    seen again by the next full read)."""
    if changes.empty:
        return snapshot
    users = dict(snapshot.users)
    groups = dict(snapshot.groups)
    touched = set(changes.users) | set(changes.removed_users)
    touched.update(s.external_id for s in changes.skipped if s.external_id)
    for uid in touched:
        users.pop(uid, None)
    # Normalise the changed users as a full read would (email case, no email, invalid,
    # duplicates among themselves and with the users already held).
    built = Snapshot.build(changes.users.values())
    new_skips = list(built.skipped)
    emails = {u.email: uid for uid, u in users.items()} if built.users else {}
    for uid, user in built.users.items():
        holder = emails.get(user.email)
        if holder is not None and holder != uid:
            pair = Snapshot.build([users[holder], user])
            users.pop(holder)
            users.update(pair.users)
            new_skips.extend(pair.skipped)
            touched.add(holder)
            continue
        users[uid] = user
    for gid in changes.removed_groups:
        groups.pop(gid, None)
    groups.update(Snapshot.build((), changes.groups.values()).groups)
    skipped = [s for s in snapshot.skipped if not (s.external_id and s.external_id in touched)]
    skipped.extend(changes.skipped)
    skipped.extend(new_skips)
    return Snapshot(
        {k: users[k] for k in sorted(users)},
        {k: groups[k] for k in sorted(groups)},
        tuple(skipped),
        snapshot.complete,
        snapshot.info,
        snapshot.previous_keys,
    )


def combine(first: Changes, then: Changes) -> Changes:
    """Two consecutive batches as one (the later state of an object wins)."""
    users = {k: v for k, v in first.users.items() if k not in then.removed_users}
    users.update(then.users)
    groups = {k: v for k, v in first.groups.items() if k not in then.removed_groups}
    groups.update(then.groups)
    removed_users = (first.removed_users - set(then.users)) | then.removed_users
    removed_groups = (first.removed_groups - set(then.groups)) | then.removed_groups
    again = {s.external_id for s in then.skipped} | set(then.users) | then.removed_users
    skipped = (*(s for s in first.skipped if s.external_id not in again), *then.skipped)
    seen = {**then.seen_at, **first.seen_at}  # the first sighting starts the lag
    return Changes(
        then.position,
        users,
        groups,
        frozenset(removed_users),
        frozenset(removed_groups),
        skipped,
        seen,
    )


@dataclass(frozen=True, slots=True)
class Affected:
    """What one batch touches."""

    users: frozenset[str]
    """Users changed, removed or newly skipped, by external id."""
    groups: frozenset[str]
    """Groups changed or removed, the groups holding a touched user, and all their
    ancestors (a nested move changes every enclosing group's flattened membership)."""

    @property
    def empty(self) -> bool:
        return not (self.users or self.groups)


def affected(before: Snapshot, after: Snapshot, changes: Changes) -> Affected:
    """The users and groups a batch touches, in the snapshot ``before`` and ``after`` it."""
    users = set(changes.users) | set(changes.removed_users)
    users.update(s.external_id for s in changes.skipped if s.external_id)
    users.update(uid for uid in changes.users if uid not in after.users)  # now skipped
    groups = set(changes.groups) | set(changes.removed_groups)
    parents: dict[str, set[str]] = {}
    for snap in (before, after):
        for gid, g in snap.groups.items():
            if users and not users.isdisjoint(g.member_ids):
                groups.add(gid)
            for sub in g.subgroup_ids:
                parents.setdefault(sub, set()).add(gid)
    todo = list(groups)
    while todo:  # ancestors, cycles survived
        for parent in parents.get(todo.pop(), ()):
            if parent not in groups:
                groups.add(parent)
                todo.append(parent)
    return Affected(frozenset(users), frozenset(groups))


def flat_members(groups: Mapping[str, Group], gid: str) -> frozenset[str]:
    """Every user in ``gid`` and the groups nested in it (cycles survived)."""
    out: set[str] = set()
    seen = {gid}
    todo = [gid]
    while todo:
        g = groups.get(todo.pop())
        if g is None:
            continue
        out.update(g.member_ids)
        for sub in g.subgroup_ids:
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return frozenset(out)


def cut_current(current: Snapshot, desired: Snapshot, hit: Affected) -> Snapshot:
    """The server's records the batch can touch: the accounts of the touched users and
    of the addresses they want, the touched groups (by id or name) and their members."""
    want_emails = {desired.users[u].email for u in hit.users if u in desired.users}
    names = {desired.groups[g].name.casefold() for g in hit.groups if g in desired.groups}
    groups = {
        k: g
        for k, g in current.groups.items()
        if g.external_id in hit.groups or g.name.casefold() in names
    }
    members: set[str] = set()
    for g in groups.values():
        members.update(g.member_ids)
    uids = set(hit.users)
    for gid in hit.groups:
        if gid in desired.groups:
            uids.update(flat_members(desired.groups, gid))
    users = {
        k: u
        for k, u in current.users.items()
        if u.external_id in uids or u.email in want_emails or k in members
    }
    return Snapshot(users, groups, (), current.complete, {**current.info, "cut": CUT})


def cut_desired(desired: Snapshot, current_cut: Snapshot, hit: Affected) -> Snapshot:
    """The directory's side of the cut: the touched users, every member of the touched
    groups, every user whose account is in ``current_cut``; groups flattened."""
    uids = set(hit.users)
    groups: dict[str, Group] = {}
    for gid in sorted(hit.groups):
        g = desired.groups.get(gid)
        if g is None:
            continue
        flat = flat_members(desired.groups, gid)
        uids.update(flat)
        groups[gid] = Group(gid, g.name, flat)
    uids.update(u.external_id for u in current_cut.users.values())
    users: dict[str, User] = {u: desired.users[u] for u in sorted(uids) if u in desired.users}
    return Snapshot(
        users, groups, desired.skipped, desired.complete, desired.info, desired.previous_keys
    )


def refresh(
    current: Snapshot,
    users: Iterable[User],
    groups: Iterable[Group],
    asked_users: Iterable[str] = (),
    asked_groups: Iterable[str] = (),
) -> Snapshot:
    """``current`` with fresh server records: ``users``/``groups`` replace the records
    with their refs; accounts asked for by external id and not returned are gone."""
    fresh_users = {u.ref: u for u in users}
    fresh_groups = {g.ref: g for g in groups}
    gone_u = set(asked_users) - {u.external_id for u in fresh_users.values()}
    gone_g = set(asked_groups) - {g.external_id for g in fresh_groups.values()}
    out_u = {
        k: u
        for k, u in current.users.items()
        if k not in fresh_users and u.external_id not in gone_u
    }
    out_u.update(fresh_users)
    out_g = {
        k: g
        for k, g in current.groups.items()
        if k not in fresh_groups and g.external_id not in gone_g
    }
    out_g.update(fresh_groups)
    return replace(current, users=out_u, groups=out_g)
