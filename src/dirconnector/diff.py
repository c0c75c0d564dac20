"""diff(desired, current, policy) -> Plan. Pure: no I/O, no clock, no logging.

Matching: a server account is the directory user whose ``external_id`` it stores;
failing that, an account with the same email whose external id no directory user
claims is *linked* (never duplicated). Groups: by external id, then by name.

Scope: only *managed* accounts are ever revoked, deleted or removed from groups.
``manage = "linked"`` (default) means accounts this tool created or linked (their
refs come from the state store) plus accounts that carry a directory user's id;
``"external_id"`` adds every account that has any external id (bwdc's
overwriteExisting reach); ``"all"`` is every account on the server.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .model import Group, Snapshot, User, flatten, paused_gc
from .plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    MemberRef,
    Plan,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
    sort_changes,
)

USER_FIELDS = ("email", "display_name", "given_name", "family_name")


@dataclass(frozen=True, slots=True)
class Policy:
    """What a run may do. Defaults are the safe ones."""

    remove_disabled: bool = True
    """Revoke accounts the directory marks disabled."""
    remove_missing: bool = False
    """Revoke managed accounts no longer in the directory (bwdc's overwriteExisting)."""
    deprovision: Literal["revoke", "delete"] = "revoke"
    """How an account leaves: revoked (restorable) or deleted."""
    manage: Literal["linked", "external_id", "all"] = "linked"
    """Which server accounts this tool may take away (see module docstring)."""
    sync_groups: bool = True
    """Create groups and keep their membership."""
    delete_missing_groups: bool = False
    """Delete managed groups the directory no longer has."""


def diff(
    desired: Snapshot,
    current: Snapshot,
    policy: Policy = Policy(),
    managed: frozenset[str] = frozenset(),
    fields: tuple[str, ...] = USER_FIELDS,
) -> Plan:
    """The changes that make ``current`` hold ``desired`` within the managed scope.

    ``fields`` are the user attributes the target can store and change (a target's
    ``user_fields``); the others are never compared, so a server that cannot hold
    display names does not get the same impossible update on every run.
    """
    with paused_gc():
        return _diff(desired, current, policy, managed, fields)


def _diff(desired: Snapshot, current: Snapshot, policy: Policy, managed: frozenset[str],
          fields: tuple[str, ...]) -> Plan:
    changes: list[Change] = []
    # Indexes of the server's accounts; the first account wins a shared id or email.
    # Built by dict() over the reversed list (the last write wins, so the first account
    # does) with the attributes fetched in C: several times faster than setdefault.
    accounts = list(current.users.values())
    accounts.reverse()
    by_ext: dict[str, User] = dict(zip(map(_ext_of, accounts), accounts, strict=True))
    by_ext.pop("", None)
    by_email: dict[str, User] = dict(zip(map(_email_of, accounts), accounts, strict=True))
    by_email.pop("", None)
    del accounts

    want_users = desired.users
    # desired external id -> server account, in the directory's order
    found = list(filter(by_ext.__contains__, want_users))
    matched: dict[str, User] = dict(zip(found, map(by_ext.__getitem__, found), strict=True))
    del found
    claimed: set[str] = set(map(_key_of, matched.values()))
    if len(matched) < len(want_users):
        for ext in itertools.filterfalse(matched.__contains__, want_users):
            user = want_users[ext]
            cand = by_email.get(user.email)
            # Only active users adopt accounts: linking a disabled person's address to a
            # manually created account, just to revoke it, would widen the managed scope.
            if (cand is not None and user.active and cand.key not in claimed
                    and cand.external_id not in want_users):
                changes.append(LinkUser(cand.key, user, cand.external_id))
                matched[ext] = cand
                claimed.add(cand.key)

    removal = DeleteUser if policy.deprovision == "delete" else RevokeUser
    remove_disabled = policy.remove_disabled
    delete = policy.deprovision == "delete"
    # Accounts whose email this plan changes, so their old address becomes free; only
    # needed when an update touches an email, so computed on first use.
    moving: list[set[str]] = []

    def moving_away() -> set[str]:
        if not moving:
            moving.append({a.key for e, a in matched.items()
                           if want_users[e].email != a.email})
        return moving[0]

    # The compared fields of a record as one tuple, fetched in C (attrgetter): equal
    # tuples mean no update, the answer for nearly every user of a steady directory.
    compared: Callable[[User], object] = (
        operator.attrgetter(*fields) if fields else (lambda _u: ()))
    if remove_disabled and delete:
        todo: Iterable[str] = want_users     # disabled users with revoked accounts count too
    else:
        # Only users without an account or whose compared fields or active flag differ
        # can need a change; find them with C-level map/compress instead of a Python
        # loop over every user (a million-user run has a few thousand of them).
        state = operator.attrgetter(*fields, "active")
        keys = list(matched)
        differ = set(itertools.compress(keys, map(
            operator.ne, map(state, map(want_users.__getitem__, keys)),
            map(state, matched.values()))))
        differ.update(want_users.keys() - matched.keys())
        todo = filter(differ.__contains__, want_users)   # in the directory's order
    leaving: set[str] = set()            # refs that lose access in this plan
    for ext in todo:
        user = want_users[ext]
        have = matched.get(ext)
        if have is None:
            if user.active:
                changes.append(CreateUser(user))
            continue
        if compared(user) == compared(have):
            if user.active == have.active and (user.active or not (remove_disabled and delete)):
                continue                 # the common case: nothing to do for this user
            delta = []
        else:
            delta = [f for f in fields
                     if getattr(user, f) and getattr(user, f) != getattr(have, f)]
        if "email" in delta:
            holder = by_email.get(user.email)
            if holder is not None and holder.key != have.key and (
                    holder.key not in moving_away()):
                delta.remove("email")    # another account keeps it: the server would refuse
        if delta:
            changes.append(UpdateUser(have.key, user, tuple(delta),
                                      tuple(str(getattr(have, f)) for f in delta)))
        if user.active and not have.active:
            changes.append(RestoreUser(have.key, user))
        elif not user.active and remove_disabled and (have.active or delete):
            changes.append(removal(have.key, ext, have.email or user.email, "disabled"))
            leaving.add(have.key)

    skipped = desired.skipped_ids
    # Accounts matched to a directory user are in scope and stay: count the active
    # ones and hand only the others to the loop below (split in C, order kept).
    accounts = list(current.users.values())
    is_claimed = list(map(claimed.__contains__, map(_key_of, accounts)))
    managed_active = sum(map(_active_of, itertools.compress(accounts, is_claimed)))
    for acct in itertools.compress(accounts, map(operator.not_, is_claimed)):
        key = acct.ref or acct.external_id
        if not _in_scope(acct, policy, managed, claimed):
            continue
        if acct.active:
            managed_active += 1
        if acct.external_id in skipped:
            continue
        if policy.remove_missing and (acct.active or delete):
            changes.append(removal(key, acct.external_id, acct.email, "missing"))
            leaving.add(key)

    if policy.sync_groups:
        changes.extend(_diff_groups(desired, current, policy, managed, matched, claimed, leaving))

    return Plan(
        changes=sort_changes(changes),
        target_digest=current.digest(),
        source_digest=desired.digest(),
        skipped=desired.skipped,
        managed_active=managed_active,
        source_users=len(want_users),
        source_complete=desired.complete,
    )


_ext_of = operator.attrgetter("external_id")
_email_of = operator.attrgetter("email")
_ref_of = operator.attrgetter("ref")
_active_of = operator.attrgetter("active")


def _key_of(record: User) -> str:
    return record.ref or record.external_id


def _by_email(m: MemberRef) -> str:
    return m.email


def _in_scope(obj: User | Group, policy: Policy, managed: frozenset[str],
              matched: set[str]) -> bool:
    """May this run take ``obj`` away? (module docstring: the managed scope)"""
    if obj.key in matched or obj.key in managed or policy.manage == "all":
        return True
    return policy.manage == "external_id" and bool(obj.external_id)


def _diff_groups(
    desired: Snapshot,
    current: Snapshot,
    policy: Policy,
    managed: frozenset[str],
    matched: Mapping[str, User],
    claimed: set[str],
    leaving: set[str],
) -> list[Change]:
    changes: list[Change] = []
    flat = flatten(desired.groups)
    by_ext: dict[str, Group] = {}
    by_name: dict[str, Group] = {}
    for grp in current.groups.values():
        if grp.external_id:
            by_ext.setdefault(grp.external_id, grp)
        by_name.setdefault(grp.name.casefold(), grp)
    accounts = current.users
    taken: set[str] = set()
    delete = policy.deprovision == "delete"
    # Each directory user that can be a member, by the key the server will know it by:
    # its account's ref, or "ext:<id>" for an account this plan creates. MemberRefs are
    # made only for the keys a group gains (a million of them would cost seconds).
    member_key: dict[str, str] = {}
    users: Iterable[str] = desired.users
    refs = list(map(_ref_of, matched.values()))
    if all(refs) and not (delete and leaving):
        # Every matched account has a ref (targets key by ref): that part of the map in
        # C; the loop below then only sees users without an account.
        member_key = dict(zip(matched, refs, strict=True))
        users = itertools.filterfalse(matched.__contains__, desired.users)
    del refs
    for uid in users:
        user = desired.users[uid]
        acct = matched.get(uid)
        if acct is None:
            if not user.active:
                continue                 # not created, so cannot be a member
            key = f"ext:{uid}"
        else:
            key = acct.ref or acct.external_id
            if delete and key in leaving:
                continue
        member_key[uid] = key

    def member_refs(members: frozenset[str], keys: set[str | None]) -> list[MemberRef]:
        """MemberRefs of the directory users among ``members`` whose key is in ``keys``."""
        out = []
        for uid in members:
            key = member_key.get(uid)
            if key is not None and key in keys:
                acct = matched.get(uid)
                out.append(MemberRef(uid, "" if acct is None else key,
                                     desired.users[uid].email))
        return out

    for gid, group in desired.groups.items():
        cur = by_ext.get(gid)
        if cur is None:
            cand = by_name.get(group.name.casefold())
            if (cand is not None and cand.key not in taken
                    and cand.external_id not in desired.groups):
                changes.append(LinkGroup(cand.key, gid, group.name, cand.external_id))
                cur = cand
        if cur is None:
            changes.append(CreateGroup(gid, group.name))
        else:
            taken.add(cur.key)
            if cur.name != group.name:
                changes.append(RenameGroup(cur.key, gid, group.name, cur.name))

        # Set algebra on member keys (C speed); MemberRefs only for the differences.
        want = set(map(member_key.get, flat[gid]))
        want.discard(None)               # users that cannot be members
        have = cur.member_ids if cur is not None else frozenset()
        gained = want - have
        add = tuple(sorted(member_refs(flat[gid], gained), key=_by_email)) if gained else ()
        remove = [MemberRef(a.external_id, a.key, a.email) for a in
                  (accounts[r] for r in have - want if r in accounts)
                  if _in_scope(a, policy, managed, claimed)
                  and not (delete and a.key in leaving)]   # deletion drops memberships
        cur_ref = cur.key if cur is not None else ""
        if add:
            changes.append(AddMembers(cur_ref, gid, group.name, add))
        if remove:
            changes.append(RemoveMembers(cur_ref, gid, group.name,
                                         tuple(sorted(remove, key=_by_email))))

    if policy.delete_missing_groups:
        for grp in current.groups.values():
            if grp.key in taken or grp.external_id in desired.groups:
                continue
            if _in_scope(grp, policy, managed, taken):
                changes.append(DeleteGroup(grp.key, grp.external_id, grp.name))
    return changes
