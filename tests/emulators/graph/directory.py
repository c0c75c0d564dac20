"""The emulated tenant: users, groups, administrative units, and a change log for delta.

Every mutation appends to ``log``; a delta token is a position in that log. This is how
Graph describes delta (delta-query-overview.md, "State tokens"): a token stands for the
state at the end of a round, and the next round returns what changed after it.
Soft-deleting a user keeps it restorable (deletedItems) and drops its memberships,
which come back on restore, as in Entra ID (user-delete.md, directory-deleteditems-restore.md).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

USER_DEFAULT_PROPERTIES = (
    # user-list.md: "By default, only a limited set of properties are returned"
    "businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName",
)
USER_MORE_PROPERTIES = (
    # user resource type (resources/user.md): properties returned only when $select-ed.
    "department", "employeeId", "employeeType", "companyName", "city", "country", "state",
    "streetAddress", "postalCode", "usageLocation", "faxNumber", "onPremisesSamAccountName",
    "employeeHireDate", "ageGroup", "otherMails", "mailNickname",
)
GROUP_DEFAULT_PROPERTIES = (
    "id", "deletedDateTime", "classification", "createdDateTime", "description", "displayName",
    "groupTypes", "mail", "mailEnabled", "mailNickname", "securityEnabled", "visibility",
)


@dataclass
class Change:
    """One entry of the change log."""

    seq: int
    kind: str          # "user" | "group"
    object_id: str
    member_id: str = ""        # for membership (and manager) changes
    member_type: str = ""      # "user" | "group" (a member), "manager" (a user's manager)
    member_added: bool = True


@dataclass
class Directory:
    """A tenant's directory objects; every public method is thread-safe."""

    tenant_id: str = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)      # group id -> member ids
    admin_units: dict[str, dict[str, Any]] = field(default_factory=dict)
    managers: dict[str, str] = field(default_factory=dict)           # user id -> manager id
    au_members: dict[str, list[str]] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    token_epoch: int = 0
    expired_as_reset: bool = False
    _memberships_of_deleted: dict[str, list[str]] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -------------------------------------------------------------- users

    def add_user(self, mail: str | None, display_name: str = "", *, upn: str | None = None,
                 given_name: str | None = None, surname: str | None = None,
                 enabled: bool = True, user_type: str = "Member", user_id: str | None = None,
                 ) -> str:
        """Create a user (user-post-users.md); returns its object id."""
        with self.lock:
            uid = user_id or str(uuid.uuid4())
            local = (mail or display_name or uid).split("@")[0].replace(" ", ".").lower()
            self.users[uid] = {
                "id": uid, "businessPhones": [], "displayName": display_name or local,
                "givenName": given_name, "jobTitle": None, "mail": mail, "mobilePhone": None,
                "officeLocation": None, "preferredLanguage": None, "surname": surname,
                "userPrincipalName": upn or f"{local}@contoso.onmicrosoft.com",
                "accountEnabled": enabled, "userType": user_type,
            }
            self._log("user", uid)
            return uid

    def add_guest(self, mail: str, display_name: str = "") -> str:
        """A B2B guest: UPN ``local_domain#EXT#@tenant`` (user-list.md, example 4)."""
        ext = mail.replace("@", "_") + "#EXT#@contoso.onmicrosoft.com"
        return self.add_user(mail, display_name, upn=ext, user_type="Guest")

    def update_user(self, uid: str, **props: Any) -> None:
        """Change user properties by their Graph names (user-update.md)."""
        with self.lock:
            self.users[uid].update(props)
            self._log("user", uid)

    def set_manager(self, uid: str, manager_id: str | None) -> None:
        """PUT /users/{id}/manager/$ref (user-post-manager.md), or DELETE it with None.
        Logged as a change of the user's ``manager`` relationship, which a users delta
        that selects ``manager`` reports (delta-query-overview.md)."""
        with self.lock:
            old = self.managers.get(uid)
            if old == manager_id:
                return
            if manager_id is None:
                self.managers.pop(uid, None)
            else:
                self.managers[uid] = manager_id
            if old is not None:
                self._log("user", uid, old, "manager", added=False)
            if manager_id is not None:
                self._log("user", uid, manager_id, "manager", added=True)

    def disable_user(self, uid: str) -> None:
        self.update_user(uid, accountEnabled=False)

    def enable_user(self, uid: str) -> None:
        self.update_user(uid, accountEnabled=True)

    def soft_delete_user(self, uid: str) -> None:
        """Move a user to deletedItems for 30 days; its memberships go with it."""
        with self.lock:
            user = self.users.pop(uid)
            user["deletedDateTime"] = "2026-11-28T00:00:00Z"
            self.deleted_users[uid] = user
            held = [gid for gid, mids in self.members.items() if uid in mids]
            self._memberships_of_deleted[uid] = held
            # The deleted user's manager links go with it, both ways: its reports lose
            # their manager (a change their delta reports) and a restore brings neither back.
            self.managers.pop(uid, None)
            for report in [r for r, boss in self.managers.items() if boss == uid]:
                del self.managers[report]
                self._log("user", report, uid, "manager", added=False)
            for gid in held:
                self.members[gid].remove(uid)
                self._log("group", gid, uid, "user", added=False)
            self._log("user", uid)

    def restore_user(self, uid: str) -> None:
        """directory-deleteditems-restore.md: the user and its memberships come back."""
        with self.lock:
            user = self.deleted_users.pop(uid)
            user.pop("deletedDateTime", None)
            self.users[uid] = user
            self._log("user", uid)
            for gid in self._memberships_of_deleted.pop(uid, []):
                if gid in self.groups:
                    self.members[gid].append(uid)
                    self._log("group", gid, uid, "user", added=True)

    def hard_delete_user(self, uid: str) -> None:
        """Delete permanently (from deletedItems, or soft then purge)."""
        with self.lock:
            if uid in self.users:
                self.soft_delete_user(uid)
            self.deleted_users.pop(uid)
            self._memberships_of_deleted.pop(uid, None)
            self._log("user", uid)

    # -------------------------------------------------------------- groups

    def add_group(self, display_name: str, members: list[str] = (),  # type: ignore[assignment]
                  *, group_id: str | None = None, unified: bool = False) -> str:
        """Create a security (or Microsoft 365) group with direct members."""
        with self.lock:
            gid = group_id or str(uuid.uuid4())
            nick = display_name.replace(" ", "")
            self.groups[gid] = {
                "id": gid, "deletedDateTime": None, "classification": None,
                "createdDateTime": "2026-01-01T00:00:00Z", "description": None,
                "displayName": display_name, "groupTypes": ["Unified"] if unified else [],
                "mail": f"{nick}@contoso.onmicrosoft.com" if unified else None,
                "mailEnabled": unified, "mailNickname": nick, "securityEnabled": not unified,
                "visibility": "Private" if unified else None,
            }
            self.members[gid] = []
            self._log("group", gid)
            for mid in members:
                self.add_member(gid, mid)
            return gid

    def rename_group(self, gid: str, display_name: str) -> None:
        with self.lock:
            self.groups[gid]["displayName"] = display_name
            self._log("group", gid)

    def add_member(self, gid: str, member_id: str) -> None:
        """group-post-members.md: add a user or a group as a direct member."""
        with self.lock:
            if member_id in self.members[gid]:
                return
            self.members[gid].append(member_id)
            self._log("group", gid, member_id, self.kind_of(member_id), added=True)

    def remove_member(self, gid: str, member_id: str) -> None:
        """group-delete-members.md."""
        with self.lock:
            self.members[gid].remove(member_id)
            self._log("group", gid, member_id, self.kind_of(member_id), added=False)

    def delete_group(self, gid: str) -> None:
        with self.lock:
            del self.groups[gid]
            del self.members[gid]
            for mids in self.members.values():
                if gid in mids:
                    mids.remove(gid)
            self._log("group", gid)

    def add_admin_unit(self, display_name: str, members: list[str] = ()  # type: ignore[assignment]
                       ) -> str:
        """An administrative unit (administrativeunit-post-administrativeunits.md)."""
        with self.lock:
            aid = str(uuid.uuid4())
            self.admin_units[aid] = {"id": aid, "deletedDateTime": None,
                                     "displayName": display_name, "description": None,
                                     "visibility": None}
            self.au_members[aid] = list(members)
            return aid

    # -------------------------------------------------------------- delta support

    def expire_delta_tokens(self, *, reset: bool = False) -> None:
        """Every delta/skip token issued so far becomes invalid: expired after 7 days
        (400 syncStateNotFound), or with ``reset`` a synchronization reset on the
        service's side (410 Gone, resyncRequired; delta-query-overview.md)."""
        with self.lock:
            self.token_epoch += 1
            self.expired_as_reset = reset

    def position(self) -> int:
        with self.lock:
            return self.log[-1].seq if self.log else 0

    def changes_between(self, kind: str, since: int, upto: int) -> list[Change]:
        with self.lock:
            # The log is in seq order: look at the tail after ``since`` only, so a poll
            # costs what changed, not the size of the tenant (as Graph's delta does).
            start = bisect.bisect_right(self.log, since, key=lambda c: c.seq)
            end = bisect.bisect_right(self.log, upto, key=lambda c: c.seq)
            return [c for c in self.log[start:end] if c.kind == kind]

    def kind_of(self, object_id: str) -> str:
        if object_id in self.groups:
            return "group"
        if object_id in self.users or object_id in self.deleted_users:
            return "user"
        raise KeyError(object_id)

    def transitive_members(self, gid: str) -> list[str]:
        """Every user and group reachable from the group (cycles tolerated)."""
        with self.lock:
            seen: list[str] = []
            todo = list(self.members.get(gid, []))
            while todo:
                mid = todo.pop(0)
                if mid in seen or mid == gid:
                    continue
                seen.append(mid)
                if mid in self.groups:
                    todo.extend(self.members[mid])
            return seen

    def _log(self, kind: str, object_id: str, member_id: str = "", member_type: str = "",
             *, added: bool = True) -> None:
        self.log.append(Change(next(self._seq), kind, object_id, member_id, member_type, added))
