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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .model import Group, Snapshot, User, flatten
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
    changes: list[Change] = []
    by_ext: dict[str, User] = {}
    by_email: dict[str, User] = {}
    for acct in current.users.values():
        if acct.external_id:
            by_ext.setdefault(acct.external_id, acct)
        if acct.email:
            by_email.setdefault(acct.email, acct)

    matched: dict[str, User] = {}        # desired external id -> server account
    claimed: set[str] = set()            # server refs matched to a desired user
    for ext in desired.users:
        found = by_ext.get(ext)
        if found is not None:
            matched[ext] = found
            claimed.add(found.key)
    for ext, user in desired.users.items():
        if ext in matched:
            continue
        cand = by_email.get(user.email)
        # Only active users adopt accounts: linking a disabled person's address to a
        # manually created account, just to revoke it, would widen the managed scope.
        if (cand is not None and user.active and cand.key not in claimed
                and cand.external_id not in desired.users):
            changes.append(LinkUser(cand.key, user, cand.external_id))
            matched[ext] = cand
            claimed.add(cand.key)

    def is_managed(acct: User | Group) -> bool:
        return _in_scope(acct, policy, managed, claimed)

    removal = DeleteUser if policy.deprovision == "delete" else RevokeUser
    # Accounts whose email this plan changes, so their old address becomes free.
    moving_away = {acct.key for ext, acct in matched.items()
                   if desired.users[ext].email != acct.email}
    leaving: set[str] = set()            # refs that lose access in this plan
    for ext, user in desired.users.items():
        target = matched.get(ext)
        if target is None:
            if user.active:
                changes.append(CreateUser(user))
            continue
        acct = target
        if (user.email, user.display_name, user.given_name, user.family_name) == (
                acct.email, acct.display_name, acct.given_name, acct.family_name):
            delta = []
        else:
            delta = [f for f in fields
                     if getattr(user, f) and getattr(user, f) != getattr(acct, f)]
        holder = by_email.get(user.email)
        if "email" in delta and holder is not None and holder.key != acct.key and (
                holder.key not in moving_away):
            delta.remove("email")        # another account keeps it: the server would refuse
        if delta:
            changes.append(UpdateUser(acct.key, user, tuple(delta),
                                      tuple(str(getattr(acct, f)) for f in delta)))
        if user.active and not acct.active:
            changes.append(RestoreUser(acct.key, user))
        elif not user.active and policy.remove_disabled and (
                acct.active or policy.deprovision == "delete"):
            changes.append(removal(acct.key, ext, acct.email or user.email, "disabled"))
            leaving.add(acct.key)

    skipped = desired.skipped_ids
    managed_active = 0
    for acct in current.users.values():
        if acct.active and is_managed(acct):
            managed_active += 1
        if acct.key in claimed or not is_managed(acct) or acct.external_id in skipped:
            continue
        if policy.remove_missing and (acct.active or policy.deprovision == "delete"):
            changes.append(removal(acct.key, acct.external_id, acct.email, "missing"))
            leaving.add(acct.key)

    if policy.sync_groups:
        changes.extend(_diff_groups(desired, current, policy, managed, matched, claimed, leaving))

    return Plan(
        changes=sort_changes(changes),
        target_digest=current.digest(),
        source_digest=desired.digest(),
        skipped=desired.skipped,
        managed_active=managed_active,
        source_users=len(desired.users),
        source_complete=desired.complete,
    )


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
    # its account's ref, or "ext:<id>" for an account this plan creates.
    member_key: dict[str, str] = {}
    member_ref: dict[str, MemberRef] = {}
    for uid, user in desired.users.items():
        acct = matched.get(uid)
        if acct is None:
            if not user.active:
                continue                 # not created, so cannot be a member
            key = f"ext:{uid}"
            member_ref[key] = MemberRef(uid, "", user.email)
        else:
            key = acct.key
            if delete and key in leaving:
                continue
            member_ref[key] = MemberRef(uid, key, user.email)
        member_key[uid] = key

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
        want = {member_key[u] for u in flat[gid] if u in member_key}
        have = cur.member_ids if cur is not None else frozenset()
        add = tuple(sorted((member_ref[k] for k in want - have), key=_by_email))
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
