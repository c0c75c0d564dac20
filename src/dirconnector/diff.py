"""diff(desired, current, policy) -> Plan. Pure: no I/O, no clock, no logging.

Matching: a server account is the directory user whose ``external_id`` it stores;
failing that, an account with the same email whose external id no directory user
claims is *linked* (never duplicated). Groups: by external id, then by name.

Kept as is: a directory entry the source read but could not use (no email, an
invalid or duplicate one, filtered out...) keeps exactly what its account has on the
server: no revoke, no update, no membership removed, and its account is never handed
to another entry by email. Such accounts are listed in ``Plan.kept`` with the reason.

Scope: only *managed* accounts are ever revoked, deleted or removed from groups.
``manage = "linked"`` (default) means accounts this tool created or linked (their
refs come from the state store) plus accounts that carry a directory user's id;
``"external_id"`` adds every account that has any external id (bwdc's
overwriteExisting reach); ``"all"`` is every account on the server.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Literal, cast

from .mapping import MANAGER
from .model import Group, Skipped, Snapshot, User, flatten, paused_gc
from .plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    Kept,
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
from .takeover import recognise

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
        # A takeover (``desired.previous_keys``) is one matching step before the diff:
        # accounts recognised by another tool's key are compared under the directory's id,
        # ahead of any matching by email (takeover.py).
        found = recognise(desired, current)
        if found is None:
            return _diff(desired, current, policy, managed, fields)
        plan = _diff(found.desired, found.current, policy, managed, fields)
        return found.finish(plan, desired, current)


class _NoAccount:
    """The stand-in account of a directory user the server does not hold (see ``_diff``).

    Every attribute the comparisons read is None, which no real record holds, so its
    compared fields never equal a directory user's and its ``ref`` is falsy.
    """

    __slots__ = ()
    external_id = email = user_name = display_name = given_name = family_name = None
    active = ref = attributes = None


_NO_ACCOUNT = _NoAccount()


def _diff(desired: Snapshot, current: Snapshot, policy: Policy, managed: frozenset[str],
          fields: tuple[str, ...]) -> Plan:
    # A million-user run is bound by memory access, not by the interpreter: every pass
    # that looks each user up in another million-entry dict costs 0.2-0.3 s. So the users
    # are matched once, into lists aligned with the directory's order (``uids``,
    # ``wants``, ``have``), and everything later reads positions in those lists; only
    # the users that need a change (a few thousand in a steady directory) are visited
    # in Python. Index dicts exist only where a lookup by id is unavoidable.
    changes: list[Change] = []
    # The server's accounts by external id; the first account wins a shared id. Built
    # by dict() over the reversed list (the last write wins, so the first account does).
    accounts = list(current.users.values())
    reverse = accounts[::-1]
    by_ext: dict[str, User] = dict(zip(map(_ext_of, reverse), reverse, strict=True))
    by_ext.pop("", None)
    del reverse

    want_users = desired.users
    uids = list(want_users)
    wants = list(want_users.values())
    everyone = range(len(uids))
    # Each directory user's account, position by position; _NO_ACCOUNT where none.
    have: list[User | _NoAccount] = list(map(by_ext.get, uids, itertools.repeat(_NO_ACCOUNT)))
    missing = list(itertools.compress(everyone, map(operator.is_, have,
                                                    itertools.repeat(_NO_ACCOUNT))))
    # Users whose compared fields or active flag differ from their account's, found in C:
    # equal tuples mean no change, the answer for nearly every user of a steady directory.
    # (An absent account's all-None fields never compare equal; ``missing`` is added
    # explicitly all the same.)
    state = operator.attrgetter(*fields, "active")
    todo = set(itertools.compress(everyone, map(operator.ne, map(state, wants),
                                                map(state, have))))
    todo.update(missing)
    remove_disabled = policy.remove_disabled
    delete = policy.deprovision == "delete"
    if remove_disabled and delete:
        # disabled users whose accounts are already revoked are deleted too
        todo.update(itertools.compress(everyone, map(operator.not_, map(_active_of, wants))))
    order = sorted(todo)                 # the directory's order
    del todo

    # Accounts by email, the first account wins: looked up only for users without an
    # account (to link one) and for email changes (is the new address taken?), so only
    # those addresses are indexed.
    wanted_emails = {wants[i].email for i in order
                     if have[i] is _NO_ACCOUNT or wants[i].email != have[i].email}
    wanted_emails.discard("")            # an empty address matches nobody
    by_email: dict[str, User] = {}
    if wanted_emails:
        holders = itertools.compress(accounts, map(wanted_emails.__contains__,
                                                   map(_email_of, accounts)))
        for acct in holders:
            by_email.setdefault(acct.email, acct)
    del wanted_emails

    removal = DeleteUser if policy.deprovision == "delete" else RevokeUser
    compared: Callable[[User], object] = (
        operator.attrgetter(*fields) if fields else (lambda _u: ()))
    linked: dict[str, str] = {}          # accounts adopted by email in this plan: key -> uid
    # Accounts whose email this plan changes, so their old address becomes free; only
    # needed when an update touches an email, so computed on first use. (A linked
    # account was found by the user's email, so it never changes email.)
    moving: list[set[str]] = []

    def moving_away() -> set[str]:
        if not moving:
            moving.append({a.key for a, u in ((have[i], wants[i]) for i in order)
                           if isinstance(a, User) and u.email != a.email})
        return moving[0]

    # Directory entries read but skipped (no email...), by external id: their accounts
    # are kept exactly as they are (module docstring).
    unusable: dict[str, Skipped] = {s.external_id: s for s in desired.skipped
                                    if s.external_id and s.kind == "user"}
    kept: list[Kept] = []
    kept_keys: set[str] = set()          # accounts of unusable entries
    for ext, skip in unusable.items():
        owned = by_ext.get(ext)
        if owned is not None:
            kept_keys.add(owned.key)
            kept.append(Kept(owned.key, ext, owned.email, skip.reason,
                             f"{skip.ref}: {skip.detail}" if skip.detail else skip.ref))

    leaving: set[str] = set()            # refs that lose access in this plan
    blocked: set[int] = set()            # users not created: their address is kept's
    for i in order:
        user = wants[i]
        found = have[i]
        if not isinstance(found, User):
            cand = by_email.get(user.email)
            if cand is not None and cand.key in kept_keys:
                # The address belongs to the account of an entry that is kept as is:
                # adopting it would hand that person's access to someone else, and a
                # create would collide with it. Neither is changed.
                kept.append(_address_taken("", uids[i], user.email, user.email, cand,
                                           unusable))
                blocked.add(i)
                continue
            # Only active users adopt accounts: linking a disabled person's address to a
            # manually created account, just to revoke it, would widen the managed scope.
            # An account matched by external id carries a directory user's id, so the
            # last condition also keeps those from being adopted twice.
            if (cand is None or not user.active or cand.key in linked
                    or cand.external_id in want_users):
                if user.active:
                    changes.append(CreateUser(user))
                continue
            changes.append(LinkUser(cand.key, user, cand.external_id))
            linked[cand.key] = uids[i]
            have[i] = found = cand
        acct = found
        if compared(user) == compared(acct):
            if user.active == acct.active and (user.active or not (remove_disabled and delete)):
                continue                 # nothing to do for this user
            delta = []
        else:
            delta = [f for f in fields if f != "attributes"
                     and getattr(user, f) and getattr(user, f) != getattr(acct, f)]
        before = [str(getattr(acct, f)) for f in delta]
        if "attributes" in fields and user.attributes != acct.attributes:
            # One entry per changed SCIM path (a cleared value too: the directory
            # cleared it), so a target patches exactly those paths.
            wanted, held = dict(user.attributes), dict(acct.attributes)
            boss = wanted.get(MANAGER)
            if boss and boss not in by_ext and not (
                    boss in want_users and want_users[boss].active):
                # The manager has no account and gets none in this plan (disabled, say):
                # the target could not point at them, so this is not a change.
                del wanted[MANAGER]
            for path in sorted(wanted.keys() | held.keys()):
                if wanted.get(path, "") != held.get(path, ""):
                    delta.append(path)
                    before.append(held.get(path, ""))
        if "email" in delta:
            holder = by_email.get(user.email)
            if holder is not None and holder.key != acct.key and (
                    holder.key not in moving_away()):
                del before[delta.index("email")]
                delta.remove("email")    # another account keeps it: the server would refuse
                kept.append(_address_taken(acct.key, uids[i], acct.email, user.email, holder,
                                           unusable))
        if delta:
            changes.append(UpdateUser(acct.key, user, tuple(delta), tuple(before)))
        if user.active and not acct.active:
            changes.append(RestoreUser(acct.key, user))
        elif not user.active and remove_disabled and (acct.active or delete):
            changes.append(removal(acct.key, uids[i], acct.email or user.email, "disabled"))
            leaving.add(acct.key)

    # The key of each directory user's account (None where there is none): the ref in C,
    # the external id for the rare account without one (``User.key``).
    keys: list[str | None] = list(map(_ref_of, have))
    for i in itertools.compress(everyone, map(operator.not_, keys)):
        account = have[i]
        keys[i] = account.external_id if isinstance(account, User) else None
    claimed: set[str | None] = set(keys)  # accounts matched to a directory user
    claimed.discard(None)

    skipped = unusable
    # Accounts matched to a directory user are in scope and stay: count the active
    # ones and hand only the others to the loop below (split in C, order kept).
    account_keys: list[str] = list(map(_ref_of, accounts))
    for i in itertools.compress(range(len(accounts)), map(operator.not_, account_keys)):
        account_keys[i] = accounts[i].external_id
    is_claimed = list(map(claimed.__contains__, account_keys))
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
        # Each directory user that can be a member, by the key the server will know it
        # by: its account's key, or "ext:<id>" for an account this plan creates.
        created: dict[str, str] = {}     # "ext:<id>" -> id
        for i in missing:
            if keys[i] is None and wants[i].active and i not in blocked:
                keys[i] = key = f"ext:{uids[i]}"
                created[key] = uids[i]
        if delete and leaving:           # a deleted account is no one's member
            for i in itertools.compress(everyone, map(leaving.__contains__, keys)):
                keys[i] = None
        member_key = dict(zip(uids, keys, strict=True))
        group_changes, managed_memberships = _diff_groups(
            desired, current, policy, managed, member_key, {**linked, **created}, created,
            claimed, leaving, kept_keys)
        changes.extend(group_changes)
    else:
        managed_memberships = 0

    return Plan(
        changes=sort_changes(changes),
        _target_digest="",
        source_digest=desired.digest(),
        skipped=desired.skipped,
        managed_active=managed_active,
        source_users=len(want_users),
        source_complete=desired.complete,
        kept=tuple(sorted(kept, key=_kept_order)),
        managed_memberships=managed_memberships,
        computed_from=current,
    )


def _address_taken(ref: str, uid: str, email: str, wanted: str, holder: User,
                   unusable: Mapping[str, Skipped]) -> Kept:
    """A person who cannot have the address ``wanted``: ``holder``'s account has it."""
    owner = unusable.get(holder.external_id)
    if owner is not None:
        return Kept(ref, uid, email, "email held by a kept account",
                    f"{wanted} is the account of {owner.ref} ({owner.reason}); fix one of "
                    f"the two entries")
    return Kept(ref, uid, email, "email held by another account",
                f"{wanted} belongs to the account with external id "
                f"{holder.external_id or '(none)'}")


def _kept_order(k: Kept) -> tuple[str, str]:
    return (k.email, k.external_id)


_ext_of = operator.attrgetter("external_id")
_email_of = operator.attrgetter("email")
_ref_of = operator.attrgetter("ref")
_active_of = operator.attrgetter("active")


def _by_email(m: MemberRef) -> str:
    return m.email


def _in_scope(obj: User | Group, policy: Policy, managed: frozenset[str],
              matched: Container[str | None]) -> bool:
    """May this run take ``obj`` away? (module docstring: the managed scope)"""
    if obj.key in matched or obj.key in managed or policy.manage == "all":
        return True
    return policy.manage == "external_id" and bool(obj.external_id)


def _diff_groups(
    desired: Snapshot,
    current: Snapshot,
    policy: Policy,
    managed: frozenset[str],
    member_key: Mapping[str, str | None],
    adopted: Mapping[str, str],
    created: Container[str],
    claimed: Container[str | None],
    leaving: set[str],
    kept_keys: Container[str],
) -> tuple[list[Change], int]:
    """Group changes, and the memberships of the server groups they manage.

    ``member_key``: each directory user's key on the server (None: it cannot be a
    member); ``adopted``: the users whose key is not their own account's (linked
    accounts and the ``created`` ones), by key; ``kept_keys``: accounts of entries kept
    as is, whose memberships are never removed."""
    changes: list[Change] = []
    managed_memberships = 0
    # Memberships are compared as sets of server keys (C speed): each group's direct
    # members are translated once, then flattened, so a user in a nested group is looked
    # up once rather than once per enclosing group (a million lookups cost 0.5 s).
    direct: dict[str, frozenset[str]] = {}
    for gid, group in desired.groups.items():
        keys = frozenset(map(member_key.get, group.member_ids))
        if None in keys:
            keys = keys.difference((None,))          # users that cannot be members
        direct[gid] = cast("frozenset[str]", keys)
    flat = flatten(desired.groups, direct)
    del direct
    by_ext: dict[str, Group] = {}
    by_name: dict[str, Group] = {}
    for grp in current.groups.values():
        if grp.external_id:
            by_ext.setdefault(grp.external_id, grp)
        by_name.setdefault(grp.name.casefold(), grp)
    accounts = current.users
    taken: set[str] = set()
    delete = policy.deprovision == "delete"
    reverse_map: list[dict[str, str]] = []

    def uid_of(key: str) -> str:
        """The directory user a member key stands for: its account's external id, unless
        the account was adopted or is yet to be created."""
        uid = adopted.get(key)
        if uid is None:
            acct = accounts.get(key)
            uid = acct.external_id if acct is not None else ""
            if member_key.get(uid) != key:
                # Not keyed by User.key (never so from a target): the full reverse map.
                if not reverse_map:
                    reverse_map.append({k: u for u, k in member_key.items() if k is not None})
                uid = reverse_map[0][key]
        return uid

    def member_ref(key: str) -> MemberRef:
        uid = uid_of(key)
        return MemberRef(uid, "" if key in created else key, desired.users[uid].email)

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

        want = flat[gid]
        have = cur.member_ids if cur is not None else frozenset()
        managed_memberships += len(have)
        if want == have:
            continue                     # one pass over the members, the usual answer
        # MemberRefs only for the differences.
        add = tuple(sorted(map(member_ref, want - have), key=_by_email))
        remove = [MemberRef(a.external_id, a.key, a.email) for a in
                  (accounts[r] for r in have - want if r in accounts)
                  if _in_scope(a, policy, managed, claimed)
                  and a.key not in kept_keys       # an unusable entry keeps its groups
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
                changes.append(DeleteGroup(grp.key, grp.external_id, grp.name,
                                           len(grp.member_ids)))
                managed_memberships += len(grp.member_ids)
    return changes, managed_memberships
