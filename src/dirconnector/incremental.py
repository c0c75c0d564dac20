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
from dataclasses import dataclass

from .connectors import Changes
from .mapping import MANAGER_SOURCE
from .model import Group, Snapshot, User

CUT = "watch"
"""``info["cut"]`` of a server snapshot cut down to a batch: a target applies a plan made
from it without reading the whole server to check it (the records were just read)."""

__all__ = ["Affected", "ServerView", "affected", "combine", "cut_desired", "merge"]


def merge(
    snapshot: Snapshot,
    changes: Changes,
    emails: dict[str, str] | None = None,
    also: set[str] | None = None,
) -> Snapshot:
    """``snapshot`` with ``changes`` applied: what a full read would give. Records keep
    their order; new ones come last.

    An address a batch touches (one a changed user held, takes or gives up) is settled
    again among every entry that carries it, as a full read would: the changed users,
    the unchanged holder, and the entries skipped as its duplicates (``Skipped.user``).
    So when one of two entries sharing an address changes its address or goes away, the
    other one is synced in the same batch. The ids of those unchanged entries whose
    outcome was settled again are added to ``also`` (the caller's batch touches them).

    ``emails``: the caller's index of ``snapshot``'s users by address (email -> id),
    updated here to match the result, so a long run does not rebuild it per batch."""
    if changes.empty:
        return snapshot
    users = dict(snapshot.users)
    groups = dict(snapshot.groups)
    if emails is None:
        emails = {u.email: uid for uid, u in users.items()}
    touched = set(changes.users) | set(changes.removed_users)
    touched.update(s.external_id for s in changes.skipped if s.external_id)
    contested: set[str] = set()
    parked: dict[str, list[User]] = {}
    for skip in snapshot.skipped:
        if skip.user is None:
            continue
        if skip.external_id in touched:
            contested.add(skip.user.email)  # it leaves that address's contest
        else:
            parked.setdefault(skip.user.email, []).append(skip.user)
    for uid in touched:
        gone = users.pop(uid, None)
        if gone is not None:
            contested.add(gone.email)
            if emails.get(gone.email) == uid:
                del emails[gone.email]
    # Normalise the changed users as a full read would (email case, no email, invalid);
    # each address is then settled among everyone who carries it.
    built = Snapshot.build(changes.users.values())
    fresh: dict[str, list[User]] = {}
    for user in built.users.values():
        fresh.setdefault(user.email, []).append(user)
    new_skips = []
    for skip in built.skipped:
        if skip.user is not None:
            fresh.setdefault(skip.user.email, []).append(skip.user)
        else:
            new_skips.append(skip)
    contested.update(fresh)
    settled: set[str] = set()
    for email in sorted(contested):
        holder = emails.get(email)
        rivals = parked.get(email, [])
        cands = [*fresh.get(email, ()), *rivals]
        if not cands:
            continue
        settled.update(u.external_id for u in rivals)
        if holder is None and len(cands) == 1:
            users[cands[0].external_id] = cands[0]
            emails[email] = cands[0].external_id
            continue
        if holder is not None:
            cands.append(users.pop(holder))
            del emails[email]
        result = Snapshot.build(cands)
        for kept in result.users.values():
            users[kept.external_id] = kept
            emails[kept.email] = kept.external_id
        new_skips.extend(result.skipped)
        if holder is not None:
            settled.add(holder)
    touched |= settled
    if also is not None:
        also |= settled
    for gid in changes.removed_groups:
        groups.pop(gid, None)
    groups.update(Snapshot.build((), changes.groups.values()).groups)
    skipped = [s for s in snapshot.skipped if not (s.external_id and s.external_id in touched)]
    skipped.extend(changes.skipped)
    skipped.extend(new_skips)
    return Snapshot(
        users, groups, tuple(skipped), snapshot.complete, snapshot.info, snapshot.previous_keys
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


def affected(
    before: Snapshot, after: Snapshot, changes: Changes, also: Iterable[str] = ()
) -> Affected:
    """The users and groups a batch touches, in the snapshot ``before`` and ``after`` it
    (``also``: unchanged users whose outcome the batch settled again, see ``merge``)."""
    users = set(changes.users) | set(changes.removed_users) | set(also)
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


def with_reports(hit: Affected, before: Snapshot, after: Snapshot, changes: Changes) -> Affected:
    """``hit`` plus the users whose manager came, went, was disabled or was enabled again in
    this batch: a mapping sends a manager only while the manager is synced and active
    (``UserMapping.map_user``), so their mapped record changes too."""
    came_or_went = {u for u in changes.users if u not in before.users}
    came_or_went |= {u for u in before.users if u not in after.users}
    came_or_went |= {u for u in changes.users if u in before.users and u in after.users
                     and before.users[u].active != after.users[u].active}
    if not came_or_went:
        return hit
    reports = {
        k
        for k, u in after.users.items()
        if any(name == MANAGER_SOURCE and v in came_or_went for name, v in u.attributes)
    }
    return Affected(hit.users | reports, hit.groups) if reports - hit.users else hit


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


class ServerView:
    """The server's records kept between batches, with the indexes a cut needs; changed
    in place by ``refresh`` (a copy of 100k records per batch costs more than the rest)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.users: dict[str, User] = dict(snapshot.users)
        self.groups: dict[str, Group] = dict(snapshot.groups)
        self.info = dict(snapshot.info)
        self.complete = snapshot.complete
        self._by_ext: dict[str, set[str]] = {}
        self._by_email: dict[str, set[str]] = {}
        for ref, u in self.users.items():
            self._index(ref, u)

    def _index(self, ref: str, u: User) -> None:
        if u.external_id:
            self._by_ext.setdefault(u.external_id, set()).add(ref)
        self._by_email.setdefault(u.email, set()).add(ref)

    def _unindex(self, ref: str, u: User) -> None:
        for table, key in ((self._by_ext, u.external_id), (self._by_email, u.email)):
            refs = table.get(key)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del table[key]

    def accounts(self, external_id: str) -> list[User]:
        """The accounts that carry ``external_id``."""
        return [self.users[r] for r in self._by_ext.get(external_id, ())]

    def snapshot(self) -> Snapshot:
        return Snapshot(self.users, self.groups, (), self.complete, self.info)

    def refresh(
        self,
        users: Iterable[User],
        groups: Iterable[Group],
        asked_users: Iterable[str] = (),
        asked_groups: Iterable[str] = (),
    ) -> None:
        """Fresh server records replace those with their refs; accounts and groups asked
        for by external id and not returned are gone from the server."""
        fresh_users = {u.ref: u for u in users}
        fresh_groups = {g.ref: g for g in groups}
        for ext in set(asked_users) - {u.external_id for u in fresh_users.values()}:
            for ref in list(self._by_ext.get(ext, ())):
                self._unindex(ref, self.users.pop(ref))
        for ref, u in fresh_users.items():
            old = self.users.get(ref)
            if old is not None:
                self._unindex(ref, old)
            self.users[ref] = u
            self._index(ref, u)
        gone_g = set(asked_groups) - {g.external_id for g in fresh_groups.values()}
        if gone_g:
            for ref in [r for r, g in self.groups.items() if g.external_id in gone_g]:
                del self.groups[ref]
        self.groups.update(fresh_groups)

    def cut(self, desired: Snapshot, hit: Affected) -> Snapshot:
        """The server's records the batch can touch: the accounts of the touched users, of
        the addresses they want and of their managers (a mapped manager is referenced only
        if they have an account: diff looks for it in the cut), the touched groups (by id
        or name) and their members."""
        names = {desired.groups[g].name.casefold() for g in hit.groups if g in desired.groups}
        groups = {
            k: g
            for k, g in self.groups.items()
            if g.external_id in hit.groups or g.name.casefold() in names
        }
        refs: set[str] = set()
        for g in groups.values():
            refs.update(g.member_ids)
        uids = set(hit.users)
        for gid in hit.groups:
            if gid in desired.groups:
                uids.update(flat_members(desired.groups, gid))
        for uid in uids:
            refs.update(self._by_ext.get(uid, ()))
        for u in hit.users:
            if u in desired.users:
                user = desired.users[u]
                refs.update(self._by_email.get(user.email, ()))
                for name, value in user.attributes:
                    if name == MANAGER_SOURCE:
                        refs.update(self._by_ext.get(value, ()))
        users = {r: self.users[r] for r in sorted(refs) if r in self.users}
        return Snapshot(users, groups, (), self.complete, {**self.info, "cut": CUT})
