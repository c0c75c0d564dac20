"""Taking over from another tool: recognise its accounts by the keys it stored, relink them.

Bwdc (Bitwarden Directory Connector) stored its own external id on every member and
group it created: the entry DN on LDAP servers without objectGUID, where this project
uses entryUUID (bwdc/keys.py has every rule, checked against bwdc's source). With
``[sync] takeover_from = "bwdc"`` the connector hands over those keys
(``Snapshot.previous_keys``), and before the plan is made:

- an account whose external id is no directory user's but is the old key of exactly
  one directory entry, and the only account with that key, is *relinked*: the plan
  holds a ``RelinkUser`` and every other comparison sees the account under the
  directory's id (so a person whose email changed since the other tool's last run is
  still recognised, by key, before any email matching);
- an account whose key matches nobody (or several entries, or whose entry already has
  an account) is left as it is and listed (``Takeover.unmatched``); when its email is a
  directory user's, that user is neither linked to it by email nor created (the server
  would refuse a second account with that email), and the account keeps its
  memberships;
- groups likewise (``RelinkGroup``), before matching by name; a group whose key
  matches nobody may still be adopted by its name afterwards (a group moved to another
  DN keeps its name), as the diff always does.

``recognise`` works on the two snapshots only; ``diff`` runs unchanged on the snapshots
it returns and ``Recognised.finish`` puts the relinks and the report into the plan.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections import Counter
from dataclasses import dataclass, replace

from .model import AMBIGUOUS, Group, Snapshot, User
from .plan import (
    AddMembers,
    Change,
    CreateGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RestoreUser,
    RevokeUser,
    Takeover,
    Unmatched,
    UpdateUser,
    sort_changes,
)

_ext_of = operator.attrgetter("external_id")
_ACCOUNT_CHANGES = (UpdateUser, RestoreUser, RevokeUser, DeleteUser, LinkUser)


@dataclass(frozen=True)
class Recognised:
    """The snapshots ``diff`` compares in a takeover, and what was recognised."""

    desired: Snapshot
    """The directory, less the users whose email an unmatched account holds."""
    current: Snapshot
    """The server with relinked accounts and groups under the directory's ids, less the
    unmatched accounts that hold a directory user's email (they stay as they are)."""
    relinks: tuple[Change, ...]
    takeover: Takeover

    def finish(self, plan: Plan, desired: Snapshot, current: Snapshot) -> Plan:
        """``plan`` (made from the snapshots above) as made from the real ones, with the
        relinks and the takeover report."""
        changed = {c.ref for c in plan.changes if isinstance(c, _ACCOUNT_CHANGES)}
        # A group whose key matched nobody may still be adopted by name (a group moved
        # to another DN keeps its name): then it is no longer left as it is.
        adopted = {c.ref for c in plan.changes if isinstance(c, LinkGroup)}
        unmatched = tuple(u for u in self.takeover.unmatched
                          if not (u.kind == "group" and u.ref in adopted))
        relinked = {c.ref for c in self.relinks if isinstance(c, RelinkUser)}
        want = desired.users
        right = sum(1 for a in itertools.compress(
            current.users.values(), map(want.__contains__, map(_ext_of, current.users.values())))
            if a.key not in changed and a.key not in relinked)
        return dataclasses.replace(
            plan, changes=sort_changes([*self.relinks, *plan.changes]),
            source_digest=desired.digest(), skipped=desired.skipped,
            source_users=len(desired.users), computed_from=current,
            takeover=replace(self.takeover, right=right, unmatched=unmatched))


def recognise(desired: Snapshot, current: Snapshot) -> Recognised | None:
    """Match the server's foreign keys against the directory's old keys (module docstring)."""
    keys = desired.previous_keys
    if keys is None:
        return None
    want = desired.users
    skipped = desired.skipped_ids
    accounts = list(current.users.values())
    held = set(map(_ext_of, accounts))
    held.discard("")
    # Accounts that no directory entry claims by id (in C: the usual answer is "none").
    foreign = [a for a in itertools.compress(accounts, map(
        operator.not_, map(want.__contains__, map(_ext_of, accounts))))
        if a.external_id and a.external_id not in skipped]
    unmatched: list[Unmatched] = []
    claims: dict[str, list[User]] = {}
    for acct in foreign:
        uid = keys.find("user", acct.external_id)
        if uid is None or (uid not in want and uid not in skipped):
            unmatched.append(_unmatched(acct, f"no directory entry has this {keys.tool} key"))
        elif uid == AMBIGUOUS:
            unmatched.append(_unmatched(acct, f"several directory entries have this "
                                              f"{keys.tool} key"))
        else:
            claims.setdefault(uid, []).append(acct)
    relinks: list[Change] = []
    moved: dict[str, User] = {}
    for uid, accts in claims.items():
        if len(accts) > 1:
            unmatched.extend(_unmatched(a, f"{len(accts)} accounts carry keys of one directory "
                                           f"entry ({uid})") for a in accts)
        elif uid in held:
            unmatched.append(_unmatched(accts[0], f"another account already carries the "
                                                  f"directory's id {uid}"))
        else:
            acct = accts[0]
            user = want.get(uid) or User(uid, acct.email, active=acct.active)
            relinks.append(RelinkUser(acct.key, user, acct.external_id))
            moved[acct.key] = replace(acct, external_id=uid)

    # An unmatched account holding a directory user's email: the person is there, under
    # a key nobody has now. Neither is touched: no link by email, no second account.
    unmatched_refs = {u.ref for u in unmatched}
    emails = {a.email: a.key for a in accounts if a.key in unmatched_refs and a.email}
    now_held = held | {a.external_id for a in moved.values()}
    owners = ({u.email: uid for uid, u in want.items()
               if u.email in emails and uid not in now_held} if emails else {})
    kept = {emails[e] for e in owners}
    for i, entry in enumerate(unmatched):
        owner = owners.get(entry.name) if entry.ref in kept else None
        if owner is not None:
            unmatched[i] = replace(entry, reason=f"{entry.reason}; its email is directory user "
                                                 f"{owner}'s, who is neither linked nor "
                                                 f"created")

    group_relinks, group_moves, group_unmatched = _groups(desired, current)
    relinks += group_relinks
    unmatched += group_unmatched

    new_current = current
    if moved or kept or group_moves:
        users = {k: moved.get(k, a) for k, a in current.users.items() if k not in kept}
        groups = ({k: group_moves.get(k, g) for k, g in current.groups.items()}
                  if group_moves else current.groups)
        new_current = Snapshot(users, groups, current.skipped, current.complete, current.info)
    new_desired = desired
    if owners:
        blocked = set(owners.values())
        new_desired = Snapshot({k: u for k, u in want.items() if k not in blocked},
                               desired.groups, desired.skipped, desired.complete, desired.info)
    unmatched.sort(key=lambda u: (u.kind, u.name, u.ref))
    return Recognised(new_desired, new_current, tuple(relinks),
                      Takeover(keys.tool, keys.rule, 0, tuple(unmatched)))


def _unmatched(acct: User, reason: str) -> Unmatched:
    return Unmatched("user", acct.key, acct.email, acct.external_id, reason)


def _groups(desired: Snapshot, current: Snapshot
            ) -> tuple[list[Change], dict[str, Group], list[Unmatched]]:
    keys = desired.previous_keys
    assert keys is not None
    want = desired.groups
    held = {g.external_id for g in current.groups.values() if g.external_id}
    claims: dict[str, list[Group]] = {}
    unmatched: list[Unmatched] = []
    for grp in current.groups.values():
        if not grp.external_id or grp.external_id in want:
            continue
        gid = keys.find("group", grp.external_id)
        if gid is None or gid == AMBIGUOUS or gid not in want:
            why = ("several directory groups have this" if gid == AMBIGUOUS
                   else "no directory group has this")
            unmatched.append(Unmatched("group", grp.key, grp.name, grp.external_id,
                                       f"{why} {keys.tool} key"))
            continue
        claims.setdefault(gid, []).append(grp)
    relinks: list[Change] = []
    moves: dict[str, Group] = {}
    for gid, grps in claims.items():
        if len(grps) > 1 or gid in held:
            why = (f"{len(grps)} groups carry keys of one directory group" if len(grps) > 1
                   else f"another group already carries the directory's id {gid}")
            unmatched.extend(Unmatched("group", g.key, g.name, g.external_id, why) for g in grps)
            continue
        grp = grps[0]
        relinks.append(RelinkGroup(grp.key, gid, want[gid].name, grp.external_id))
        moves[grp.key] = replace(grp, external_id=gid)
    return relinks, moves, unmatched


# ---------------------------------------------------------------------- the report


def summary(plan: Plan) -> list[str]:
    """The takeover report in plain lines: what is right, relinked, new, and different."""
    t = plan.takeover
    if t is None:
        return []
    counts = Counter(c.kind for c in plan.changes)
    reasons = Counter(c.reason for c in plan.changes if isinstance(c, RevokeUser | DeleteUser))
    lines = [f"Takeover from {t.tool}: {t.tool} keyed this directory on {t.rule}.",
             f"  {t.right} member(s) already carry this connector's id and need nothing"]
    if counts["relink_user"] or counts["relink_group"]:
        lines.append(f"  {counts['relink_user']} member(s) and {counts['relink_group']} "
                     f"group(s) recognised by {t.tool}'s key: relinked (> relink)")
    lines.append(f"  {counts['create_user']} directory user(s) without a member: new (+ create)")
    differ = leftovers(plan)
    if differ:
        lines.append(f"  differ from what {t.tool} left: " + "; ".join(differ))
    if reasons and not differ:
        lines.append(f"  {sum(reasons.values())} member(s) to revoke or remove")
    users = [u for u in t.unmatched if u.kind == "user"]
    groups = [u for u in t.unmatched if u.kind == "group"]
    if users or groups:
        lines.append(f"  left as they are (listed in --format json): {len(users)} member(s) "
                     f"and {len(groups)} group(s) whose key matches no single directory entry")
        for u in [*users, *groups][:10]:
            lines.append(f"    {u.kind} {u.name} ({u.external_id!r}): {u.reason}")
        if len(users) + len(groups) > 10:
            lines.append(f"    … and {len(users) + len(groups) - 10} more")
    return lines


def leftovers(plan: Plan) -> list[str]:
    """What differs from what the other tool left, counted by kind, in words."""
    counts = Counter(c.kind for c in plan.changes)
    removals = Counter(c.reason for c in plan.changes if isinstance(c, RevokeUser | DeleteUser))
    added = sum(len(c.members) for c in plan.changes if isinstance(c, AddMembers))
    removed = sum(len(c.members) for c in plan.changes if isinstance(c, RemoveMembers))
    new_groups = sum(1 for c in plan.changes if isinstance(c, CreateGroup))
    out = []
    if removals["disabled"]:
        out.append(f"{removals['disabled']} member(s) disabled in the directory but active "
                   f"on the server (- revoke: remove_disabled)")
    if removals["missing"]:
        out.append(f"{removals['missing']} member(s) no longer in the directory "
                   f"(- revoke: remove_missing)")
    if counts["restore_user"]:
        out.append(f"{counts['restore_user']} revoked member(s) active in the directory "
                   f"(+ restore)")
    if counts["update_user"]:
        out.append(f"{counts['update_user']} member(s) whose email or name differs (~ update)")
    if new_groups:
        tool = plan.takeover.tool if plan.takeover else "the other tool"
        out.append(f"{new_groups} group(s) {tool} never synced (+ create)")
    if added or removed:
        out.append(f"{added} group membership(s) to add and {removed} to remove (groups read "
                   f"differently: nesting, member spellings, other group classes)")
    if counts["link_user"] or counts["link_group"]:
        out.append(f"{counts['link_user']} member(s) and {counts['link_group']} group(s) "
                   f"matched by email or name (> link)")
    return out


def guard_note(plan: Plan) -> str:
    """Appended to a refusal during a takeover: the removals are the other tool's leftovers."""
    t = plan.takeover
    if t is None or not any(c.kind in ("relink_user", "relink_group") for c in plan.changes):
        return ""
    return (f"this is the first plan of a takeover from {t.tool}: the removals are differences "
            f"{t.tool} left on the server ({'; '.join(leftovers(plan)) or 'see the plan'}); "
            f"check them in `dirconnector plan`, then sync with --force, or change the policy "
            f"([sync] remove_disabled, remove_missing) to keep them")


__all__ = ["Recognised", "guard_note", "leftovers", "recognise", "summary"]
