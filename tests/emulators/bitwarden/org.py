"""The organization a Bitwarden-compatible test server holds, and the import command.

State and semantics follow shared/reference/bitwarden.md section 2.6 (SRV
``ImportOrganizationUsersAndGroupsCommand``) and section 3 (SCIM). Everything here
is plain data guarded by one lock held by the caller (:class:`Organization.lock`).
Failures are raised as :class:`ApiError` carrying the HTTP status and the message
the real server answers with.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

# OrganizationUserStatusType (SRV src/Core/AdminConsole/Enums). Staged is newer than the
# stored server snapshot (feature flag PM34423StagedStatus); its number is our choice.
INVITED, ACCEPTED, CONFIRMED, REVOKED, STAGED = 0, 1, 2, -1, 3
STATUS_NAMES = {INVITED: "Invited", ACCEPTED: "Accepted", CONFIRMED: "Confirmed",
                REVOKED: "Revoked", STAGED: "Staged"}
# OrganizationUserType.
OWNER, ADMIN, USER, CUSTOM = 0, 1, 2, 4
TYPE_NAMES = {OWNER: "Owner", ADMIN: "Admin", USER: "User", CUSTOM: "Custom"}

IMPORT_LIMIT = 2000
_EDITS = [0]
"""Bumped by every write to any Member (creation included) and every removal."""
UNHANDLED = "An unhandled server error has occurred."


class ApiError(Exception):
    """An error answer: HTTP status and the server's message (plus model-state errors)."""

    def __init__(self, status: int, message: str,
                 errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


@dataclass
class Member:
    """An OrganizationUser."""

    id: str
    email: str
    external_id: str | None = None
    status: int = INVITED
    type: int = USER
    name: str | None = None
    status_before_revoke: int = INVITED
    has_master_password: bool = True
    collections: list[dict[str, Any]] = field(default_factory=list)
    """Collection access: {id, readOnly, hidePasswords, manage} (AssociationWithPermissions)."""
    permissions: dict[str, bool] | None = None
    """Custom permissions (PermissionsModel); only meaningful for the Custom type."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        _EDITS[0] += 1                   # any change to any member voids cached views

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]


@dataclass
class GroupRecord:
    """A group; ``member_ids`` are OrganizationUser ids."""

    id: str
    name: str
    external_id: str | None = None
    member_ids: set[str] = field(default_factory=set)
    collections: list[dict[str, Any]] = field(default_factory=list)


def new_id() -> str:
    """A random (version 4) UUID string, five times cheaper than ``str(uuid.uuid4())``."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class Organization:
    """Members and groups of one organization, and the operations on them."""

    def __init__(self, org_id: str) -> None:
        self.id = org_id
        self.lock = threading.RLock()
        self.members: dict[str, Member] = {}
        self.groups: dict[str, GroupRecord] = {}
        self.use_groups = True
        self.use_directory = True
        self.self_hosted = False
        """Self-hosted servers have no 2,000-object import limit."""
        self.seats: int | None = None
        """Seat limit (None: unlimited); revoked members free their seat."""
        self.staged_status_flag = True
        """Server flag PM34423StagedStatus: honour inviteUsersAfterProvisioning=false."""
        self.scim_invite_users = True
        """ScimConfig.InviteUsersAfterProvisioning (null means true)."""
        self._views: tuple[int, dict[str, Member], dict[str, Member], set[str]] | None = None
        """What the last import left: (``_EDITS`` then, by_ext, no_ext, known emails)."""

    # ------------------------------------------------------------------ direct helpers

    def add_member(self, email: str, *, external_id: str | None = None, status: int = CONFIRMED,
                   type: int = USER, name: str | None = None,
                   has_master_password: bool = True) -> Member:
        with self.lock:
            m = Member(new_id(), email, external_id or None, status, type, name,
                       has_master_password=has_master_password)
            self.members[m.id] = m
            return m

    def add_group(self, name: str, *, external_id: str | None = None,
                  member_ids: set[str] | None = None) -> GroupRecord:
        with self.lock:
            g = GroupRecord(new_id(), name, external_id or None, set(member_ids or ()))
            self.groups[g.id] = g
            return g

    def member_by_email(self, email: str) -> Member | None:
        low = email.lower()
        return next((m for m in self.members.values() if m.email.lower() == low), None)

    def member_by_external_id(self, external_id: str) -> Member | None:
        return next((m for m in self.members.values() if m.external_id == external_id), None)

    def remove_member(self, member_id: str) -> None:
        _EDITS[0] += 1
        self.members.pop(member_id, None)
        for g in self.groups.values():
            g.member_ids.discard(member_id)

    def occupied_seats(self) -> int:
        return sum(1 for m in self.members.values() if m.status != REVOKED)

    def revoke(self, member_id: str) -> None:
        m = self.members[member_id]
        if m.status == REVOKED:
            raise ApiError(400, "Already revoked.")
        if m.type == OWNER and m.status == CONFIRMED and sum(
                1 for o in self.members.values()
                if o.type == OWNER and o.status == CONFIRMED) <= 1:
            raise ApiError(400, "Organization must have at least one confirmed owner.")
        m.status_before_revoke = m.status
        m.status = REVOKED

    def restore(self, member_id: str) -> None:
        m = self.members[member_id]
        if m.status != REVOKED:
            raise ApiError(400, "Already active.")
        if self.seats is not None and self.occupied_seats() >= self.seats:
            raise ApiError(400, "You have reached the maximum number of seats.")
        m.status = m.status_before_revoke

    # ------------------------------------------------------------------ the import

    def import_(self, body: Any) -> None:
        """POST /public/organization/import (reference 2.6), all or nothing on validation."""
        with self.lock:
            self._import(body)

    def _import(self, body: Any) -> None:
        groups, members, overwrite, large, invite = _validate_import(body)
        imported = [m for m in members if not m["deleted"]]
        deleted_ext = [m["externalId"] for m in members if m["deleted"]]
        if not self.self_hosted and not large and (
                len(groups) > IMPORT_LIMIT or len(imported) > IMPORT_LIMIT):
            raise ApiError(400, "You cannot import this much data at once.")
        if not self.use_directory:
            raise ApiError(400, "Organization cannot use directory syncing.")
        if groups and not self.use_groups:
            raise ApiError(400, "Organization cannot use groups.")
        # The real command builds dictionaries with ToDictionary: a duplicate key is an
        # ArgumentException, answered as an unhandled 500 (DC #190, SRV #385).
        for key in ("email", "externalId"):
            values = [m[key].lower() if key == "email" else m[key] for m in imported]
            if len(set(values)) != len(values):
                raise ApiError(500, UNHANDLED)
        gext = [g["externalId"] for g in groups]
        if len(set(gext)) != len(gext):
            raise ApiError(500, UNHANDLED)
        by_ext, no_ext, known_emails = self._member_views()

        removed = False
        imported_ext = {m["externalId"] for m in imported}
        if overwrite and any(not m.has_master_password for ext, m in by_ext.items()
                             if ext not in imported_ext and m.type != OWNER):
            # PM-20140 (SRV PR #6173): removing TDE / Key Connector users would brick them.
            raise ApiError(400, "Sync failed. To proceed, disable the 'Remove and re-add "
                                "users during next sync' setting and try again.")
        # 3. Members sent as deleted: removed (not revoked), owners excepted.
        for ext in deleted_ext:
            victim = by_ext.get(ext)
            if ext in imported_ext or victim is None or victim.type == OWNER:
                continue
            self.remove_member(victim.id)
            del by_ext[ext]
            removed = True
        # 4. overwriteExisting: every external member not imported, owners excepted.
        if overwrite:
            doomed = [m for ext, m in by_ext.items()
                      if ext not in imported_ext and m.type != OWNER]
            for m in doomed:
                self.remove_member(m.id)
                del by_ext[m.external_id or ""]
                removed = True
        # 5. Link by email: members without an external id get the imported one (the
        # removals above only took members with one: ``no_ext`` still holds).
        for entry in imported:
            if entry["externalId"] in by_ext:
                continue
            target = no_ext.pop(entry["email"].lower(), None)
            if target is not None:
                target.external_id = entry["externalId"]
                by_ext[entry["externalId"]] = target
        # 6. New members; emails already in the organization are skipped silently.
        if removed:
            known_emails = {m.email.lower() for m in self.members.values()}
        new = [e for e in imported if e["externalId"] not in by_ext
               and e["email"].lower() not in known_emails]
        if self.seats is not None and self.occupied_seats() + len(new) > self.seats:
            raise ApiError(400, f"You have reached the maximum number of users "
                                f"({self.seats}) for this organization.")
        status = STAGED if (not invite and self.staged_status_flag) else INVITED
        for entry in new:
            m = self.add_member(entry["email"], external_id=entry["externalId"],
                                status=status, type=USER)
            by_ext[entry["externalId"]] = m
            known_emails.add(entry["email"].lower())
        self._views = (_EDITS[0], by_ext, no_ext, known_emails)
        # 7. Groups by external id; membership replaced by the known members sent.
        groups_by_ext = {g.external_id: g for g in self.groups.values() if g.external_id}
        for entry in groups:
            grp = groups_by_ext.get(entry["externalId"])
            if grp is None:
                grp = self.add_group(entry["name"], external_id=entry["externalId"])
            elif grp.name != entry["name"]:
                grp.name = entry["name"]
            grp.member_ids = {by_ext[x].id for x in entry["memberExternalIds"] if x in by_ext}


    def _member_views(self) -> tuple[dict[str, Member], dict[str, Member], set[str]]:
        """Members by external id, members without one by email, every email (lower case).

        One pass over the organization, or copies of what the previous import left when
        no member changed since (a 100k-member organization is imported in 50 requests;
        a pass each made the test server, not the client, the slow side of a sync).
        A duplicate external id answers 500, as the real command's ToDictionary does.
        """
        if self._views is not None and self._views[0] == _EDITS[0]:
            _, by_ext, no_ext, emails = self._views
            return dict(by_ext), dict(no_ext), set(emails)
        by_ext = {}
        no_ext = {}
        emails = set()
        shared_ext = False
        for m in self.members.values():
            low = m.email.lower()
            emails.add(low)
            if m.external_id:
                shared_ext = shared_ext or m.external_id in by_ext
                by_ext[m.external_id] = m
            else:
                no_ext[low] = m
        if shared_ext:
            raise ApiError(500, UNHANDLED)
        return by_ext, no_ext, emails


def _validate_import(body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool, bool,
                                         bool]:
    """OrganizationImportRequestModel's data annotations: 400 with model-state errors."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise ApiError(400, "The request's model state is invalid.", {"": ["Invalid body."]})
    groups = body.get("groups") or []
    members = body.get("members") or []
    if body.get("overwriteExisting") is None:
        errors["OverwriteExisting"] = ["The OverwriteExisting field is required."]
    for i, g in enumerate(groups):
        name = g.get("name")
        ext = g.get("externalId")
        if isinstance(ext, int | float):        # PermissiveStringConverter
            g["externalId"] = ext = str(ext)
        if not name:
            errors[f"Groups[{i}].Name"] = ["The Name field is required."]
        elif len(name) > 100:
            errors[f"Groups[{i}].Name"] = [
                "The field Name must be a string with a maximum length of 100."]
        if not ext:
            errors[f"Groups[{i}].ExternalId"] = ["The ExternalId field is required."]
        elif len(ext) > 300:
            errors[f"Groups[{i}].ExternalId"] = [
                "The field ExternalId must be a string with a maximum length of 300."]
        g["memberExternalIds"] = [str(x) for x in g.get("memberExternalIds") or []]
    for i, m in enumerate(members):
        m["deleted"] = bool(m.get("deleted"))
        email = m.get("email")
        ext = m.get("externalId")
        if isinstance(ext, int | float):
            m["externalId"] = ext = str(ext)
        if not m["deleted"] and not email:
            errors[f"Members[{i}].Email"] = ["Email is required for enabled members."]
        elif email and (len(email) > 256 or "@" not in email):
            errors[f"Members[{i}].Email"] = ["The Email field is not a valid e-mail address."]
        if not ext:
            errors[f"Members[{i}].ExternalId"] = ["The ExternalId field is required."]
        elif len(ext) > 300:
            errors[f"Members[{i}].ExternalId"] = [
                "The field ExternalId must be a string with a maximum length of 300."]
    if errors:
        raise ApiError(400, "The request's model state is invalid.", errors)
    invite = body.get("inviteUsersAfterProvisioning")
    return (groups, members, bool(body.get("overwriteExisting")), bool(body.get("largeImport")),
            True if invite is None else bool(invite))
