"""Mapping a plan onto Bitwarden's Public API: pure data, no I/O.

``POST /public/organization/import`` (shared/reference/bitwarden.md 2.4, 2.6) is
not a list of edits but a statement of state: members are created or linked by
email, members sent as ``deleted`` are *removed* from the organization, and every
group sent has its membership *replaced* by the members listed. So for each group a
plan touches, the full membership it should have is computed here from the server
snapshot the plan was made against plus the plan's own changes.

What the import cannot do goes to the endpoint that can (revoke/restore, group
adoption by PUT, relinks of members and groups recognised by another tool's key by
PUT, deletion of members without an external id, group deletion) or is refused with
a reason (email and name changes; linking by email a member that already carries
another external id). ``overwriteExisting`` is never sent: explicit
``deleted`` entries remove exactly the plan's DeleteUser changes and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import TargetError
from ...model import Group, Snapshot
from ...plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
)

BATCH = 2000
"""Objects per request when batching (bwdc's batch size; the cloud's per-import limit)."""
MAX_EMAIL, MAX_EXTERNAL_ID, MAX_GROUP_NAME = 256, 300, 100

NO_UPDATE = ("Bitwarden's import cannot change a member's email or name (the person owns "
             "their account); change it in the Admin Console or by the user")
NO_RELINK = ("a member with this email already carries external id {old!r}, which names no "
             "directory entry, and the import never relinks by email; if another tool set "
             "it, see [sync] takeover_from, else clear it in the Admin Console")
OWNER_KEPT = "owners are never removed by the import; remove the owner role first"


def email_change_note(through: str, change: UpdateUser) -> str:
    """Why a Bitwarden member keeps the email the directory changed (a plan note)."""
    if "email" not in change.fields:
        return f"name change not possible through {through} (Bitwarden members own their name)"
    before = change.before[change.fields.index("email")]
    return (f"email change not possible through {through} (Bitwarden members own their "
            f"email): {before} → {change.user.email}; the member keeps {before} until they "
            f"change it in their account settings")


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """One POST /public/organization/import and the plan changes its answer decides."""

    members: tuple[dict[str, Any], ...]
    groups: tuple[dict[str, Any], ...]
    large: bool
    changes: tuple[Change, ...]

    def body(self, invite_users: bool) -> dict[str, Any]:
        """The request body, in the field order bwdc sends (reference 2.4)."""
        return {"groups": [dict(g) for g in self.groups],
                "members": [dict(m) for m in self.members],
                "overwriteExisting": False, "largeImport": self.large,
                "inviteUsersAfterProvisioning": invite_users}


@dataclass(frozen=True, slots=True)
class Work:
    """Everything an apply sends, in order, and what it refuses up front."""

    member_relinks: tuple[RelinkUser, ...] = ()
    """Members recognised by another tool's key: PUT /public/members/{id}, before all else."""
    restores: tuple[RestoreUser, ...] = ()
    group_links: tuple[LinkGroup | RelinkGroup, ...] = ()
    imports: tuple[ImportRequest, ...] = ()
    keep_members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Group ref -> member refs without an external id that must stay members (the
    import would drop them; they are put back with PUT /groups/{id}/member-ids)."""
    revokes: tuple[RevokeUser, ...] = ()
    removal_imports: tuple[ImportRequest, ...] = ()
    member_deletes: tuple[DeleteUser, ...] = ()
    group_deletes: tuple[DeleteGroup, ...] = ()
    refused: tuple[tuple[Change, str], ...] = ()


def plan_work(plan: Plan, current: Snapshot, *, large: bool | None, owners: frozenset[str],
              cloud: bool) -> Work:
    """Turn ``plan`` into requests; ``large=None`` means auto. Raises TargetError if invalid."""
    refused: list[tuple[Change, str]] = []
    members: list[tuple[dict[str, Any], Change]] = []
    linked_ext: dict[str, str] = {}              # ref -> external id it gets in this plan
    relinked: dict[str, str] = {}                # ref -> its new id (relinked by PUT first)
    deleting: set[str] = set()
    for change in plan.changes:
        if isinstance(change, DeleteUser):
            deleting.add(change.ref)
        elif isinstance(change, RelinkUser):
            relinked[change.ref] = change.user.external_id
    for change in plan.changes:
        if isinstance(change, CreateUser):
            members.append((_member(change.user.email, change.user.external_id), change))
        elif isinstance(change, LinkUser):
            if change.previous_external_id:
                refused.append((change, NO_RELINK.format(old=change.previous_external_id)))
            else:
                members.append((_member(change.user.email, change.user.external_id), change))
                linked_ext[change.ref] = change.user.external_id
        elif isinstance(change, UpdateUser):
            refused.append((change, NO_UPDATE))

    removals: list[tuple[dict[str, Any], Change]] = []
    member_deletes: list[DeleteUser] = []
    for change in plan.changes:
        if not isinstance(change, DeleteUser):
            continue
        acct = current.users.get(change.ref)
        server_ext = relinked.get(change.ref) or (
            acct.external_id if acct is not None else change.external_id)
        if change.ref in owners:
            refused.append((change, OWNER_KEPT))
        elif server_ext and change.ref not in linked_ext:
            email = acct.email if acct is not None else change.email
            removals.append(({"email": email, "externalId": server_ext, "deleted": True},
                             change))
        else:
            # The import removes by external id only; this member has none (yet).
            member_deletes.append(change)

    groups, keep = _group_entries(plan, current, linked_ext, relinked, deleting)
    _validate([m for m, _ in members], [g for g, _ in groups], [m for m, _ in removals])
    if members or groups or removals:
        _shared_external_ids(current)
    total = len(members) + len(groups)
    batch = (total > BATCH) if large is None else large
    if not batch and cloud and (len(members) > BATCH or len(groups) > BATCH):
        raise TargetError(
            f"bitwarden: the import holds {len(members)} members and {len(groups)} groups; "
            f"Bitwarden's cloud refuses more than {BATCH} of either without largeImport. "
            f"Nothing was sent.", hint='set large_import = "auto" (or true) in [target]')
    imports = _requests(members, groups, batch)
    removal_imports = _requests(removals, [], batch)
    return Work(
        member_relinks=tuple(c for c in plan.changes if isinstance(c, RelinkUser)),
        restores=tuple(c for c in plan.changes if isinstance(c, RestoreUser)),
        group_links=tuple(c for c in plan.changes if isinstance(c, LinkGroup | RelinkGroup)),
        imports=imports,
        keep_members=keep,
        revokes=tuple(c for c in plan.changes if isinstance(c, RevokeUser)),
        removal_imports=removal_imports,
        member_deletes=tuple(member_deletes),
        group_deletes=tuple(c for c in plan.changes if isinstance(c, DeleteGroup)),
        refused=tuple(refused),
    )


def _member(email: str, external_id: str) -> dict[str, Any]:
    return {"email": email, "externalId": external_id, "deleted": False}


def _group_entries(
    plan: Plan, current: Snapshot, linked_ext: Mapping[str, str], relinked: Mapping[str, str],
    deleting: set[str],
) -> tuple[list[tuple[dict[str, Any], Change]], dict[str, frozenset[str]]]:
    """One import group per touched group, with its complete desired membership.

    A member relinked in this plan is listed under both ids: the server keeps the
    members it knows by external id (reference 2.6 step 7), so it stays a member
    whether its relink (sent before the import) went through or not.
    """
    touched: dict[str, list[Change]] = {}
    for change in plan.changes:
        if isinstance(change, CreateGroup | LinkGroup | RenameGroup):
            touched.setdefault(change.external_id, []).append(change)
        elif isinstance(change, AddMembers | RemoveMembers):
            touched.setdefault(change.group_external_id, []).append(change)
    by_ext = {g.external_id: g for g in current.groups.values() if g.external_id}
    entries: list[tuple[dict[str, Any], Change]] = []
    keep: dict[str, frozenset[str]] = {}
    for gext, changes in touched.items():
        cur = by_ext.get(gext) or _group_by_ref(current, changes)
        name = next((c.name for c in changes if isinstance(c, CreateGroup | LinkGroup
                                                            | RenameGroup)), "")
        name = name or next((c.group_name for c in changes
                             if isinstance(c, AddMembers | RemoveMembers)), "")
        name = name or (cur.name if cur is not None else "")
        refs = set(cur.member_ids) if cur is not None else set()
        adds: list[str] = []
        for c in changes:
            if isinstance(c, RemoveMembers):
                refs -= {m.ref for m in c.members}
            elif isinstance(c, AddMembers):
                adds += [m.external_id for m in c.members]
        ext_ids: list[str] = []
        unsendable: set[str] = set()
        for ref in sorted(refs):
            acct = current.users.get(ref)
            ext = linked_ext.get(ref) or (acct.external_id if acct is not None else "")
            if ref in relinked:
                ext_ids.append(relinked[ref])
            if ext:
                ext_ids.append(ext)
            elif ref not in deleting:
                unsendable.add(ref)
        ext_ids = sorted(set(ext_ids) | set(adds))
        if unsendable and cur is not None:
            keep[cur.ref] = frozenset(unsendable)
        entry = {"name": name, "externalId": gext, "memberExternalIds": ext_ids}
        for c in changes:
            entries.append((entry, c))
    return entries, keep


def _group_by_ref(current: Snapshot, changes: Sequence[Change]) -> Group | None:
    for c in changes:
        ref = getattr(c, "ref", "") or getattr(c, "group_ref", "")
        if ref and ref in current.groups:
            return current.groups[ref]
    return None


def _validate(members: Iterable[dict[str, Any]], groups: Iterable[dict[str, Any]],
              removals: Iterable[dict[str, Any]]) -> None:
    """Refuse what the server would reject (400) or crash on (500), naming every record."""
    problems: list[str] = []
    seen_email: dict[str, str] = {}
    seen_ext: dict[str, str] = {}
    for m in members:
        email, ext = m["email"], m["externalId"]
        low = email.lower()
        if low in seen_email:
            problems.append(f"duplicate email {email} (external ids {seen_email[low]!r} and "
                            f"{ext!r})")
        seen_email.setdefault(low, ext)
        if ext in seen_ext:
            problems.append(f"duplicate external id {ext!r} ({seen_ext[ext]} and {email})")
        seen_ext.setdefault(ext, email)
    for m in [*members, *removals]:
        if len(m["email"]) > MAX_EMAIL:
            problems.append(f"email {m['email'][:40]}… of external id {m['externalId']!r} has "
                            f"{len(m['email'])} characters (max {MAX_EMAIL})")
        if len(m["externalId"]) > MAX_EXTERNAL_ID:
            problems.append(f"external id of {m['email']} has {len(m['externalId'])} "
                            f"characters (max {MAX_EXTERNAL_ID})")
    seen_group: set[str] = set()
    for g in {id(g): g for g in groups}.values():
        if g["externalId"] in seen_group:
            problems.append(f"duplicate group external id {g['externalId']!r}")
        seen_group.add(g["externalId"])
        if len(g["name"]) > MAX_GROUP_NAME:
            problems.append(f"group {g['name'][:40]!r}… has a {len(g['name'])}-character name "
                            f"(max {MAX_GROUP_NAME})")
        if len(g["externalId"]) > MAX_EXTERNAL_ID:
            problems.append(f"group {g['name']!r} has a {len(g['externalId'])}-character "
                            f"external id (max {MAX_EXTERNAL_ID})")
    if problems:
        shown = "; ".join(problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise TargetError(f"bitwarden: refusing to send the import, nothing was sent: "
                          f"{shown}{more}",
                          hint="fix these records in the directory (or filter them out)")


def _shared_external_ids(current: Snapshot) -> None:
    """Two members holding one external id make every import answer 500 (reference 2.6)."""
    holders: dict[str, list[str]] = {}
    for user in current.users.values():
        if user.external_id:
            holders.setdefault(user.external_id, []).append(user.email)
    shared = {ext: emails for ext, emails in holders.items() if len(emails) > 1}
    if shared:
        shown = "; ".join(f"{ext!r} on {', '.join(sorted(e))}"
                          for ext, e in sorted(shared.items())[:10])
        raise TargetError(f"bitwarden: refusing to send the import, nothing was sent: members "
                          f"share an external id, which makes the server fail every import: "
                          f"{shown}", hint="clear or correct the duplicates in the Admin "
                          "Console (or with SCIM PATCH externalId)")


def _requests(members: list[tuple[dict[str, Any], Change]],
              groups: list[tuple[dict[str, Any], Change]], batch: bool
              ) -> tuple[ImportRequest, ...]:
    """One request, or (batched) member chunks first, then group chunks (reference 2.4)."""
    if not members and not groups:
        return ()
    if not batch:
        return (_request(members, groups, False),)
    out = [_request(members[i:i + BATCH], [], True) for i in range(0, len(members), BATCH)]
    distinct = _distinct(groups)
    for i in range(0, len(distinct), BATCH):
        chunk = set(map(id, distinct[i:i + BATCH]))
        out.append(_request([], [(g, c) for g, c in groups if id(g) in chunk], True))
    return tuple(out)


def _distinct(groups: list[tuple[dict[str, Any], Change]]) -> list[dict[str, Any]]:
    return list({id(g): g for g, _ in groups}.values())


def _request(members: list[tuple[dict[str, Any], Change]],
             groups: list[tuple[dict[str, Any], Change]], large: bool) -> ImportRequest:
    return ImportRequest(tuple(m for m, _ in members), tuple(_distinct(groups)), large,
                         tuple(c for _, c in members) + tuple(c for _, c in groups))
