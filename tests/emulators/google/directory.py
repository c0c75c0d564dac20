"""The emulated Workspace account: users, groups, members, faults, and the Directory API.

Resources follow the Directory API reference (admin.directory_v1 discovery document,
revision 20261104, and developers.google.com/workspace/admin/directory/reference/rest/v1):
``admin#directory#users`` / ``#groups`` / ``#members`` list bodies with ``nextPageToken``
present only when more data exists; ``maxResults`` 1..500 for users and 1..200 for groups
and members; members of ``type`` USER, GROUP (a nested group, id = group id) and CUSTOMER
(every user of the account, id = customer id, no email). Tests change the state between
reads through the methods below.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from . import errors, query
from .auth import SCOPE_PREFIX, OAuth

Answer = tuple[int, dict[str, str], dict[str, Any]]
API = "/admin/directory/v1/"
USER_SCOPES = {SCOPE_PREFIX + s for s in ("admin.directory.user.readonly",
                                          "admin.directory.user")}
GROUP_SCOPES = {SCOPE_PREFIX + s for s in ("admin.directory.group.readonly",
                                           "admin.directory.group")}
MEMBER_SCOPES = GROUP_SCOPES | {SCOPE_PREFIX + s for s in ("admin.directory.group.member",
                                                           "admin.directory.group.member.readonly")}
REPORTS = "/admin/reports/v1/activity/users/"
REPORT_SCOPES = {SCOPE_PREFIX + "admin.reports.audit.readonly"}


@dataclass
class Fault:
    """Answer the next ``times`` calls of ``operation`` with an error."""

    operation: str
    status: int
    reason: str
    times: int = 1
    retry_after: str | None = None


@dataclass
class Directory:
    """One Workspace customer with one primary domain."""

    domain: str = "example.com"
    customer_id: str = "C03az79cb"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    oauth: OAuth = field(default_factory=OAuth)
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(operation, query parameters) of every API call that passed authentication."""
    activities: list[dict[str, Any]] = field(default_factory=list)
    """The Admin audit log (Reports API Activity resources), oldest first."""
    audit_lag: float = 0.0
    """Seconds before an activity shows in activities.list (Google: minutes)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------ state for tests

    def add_user(self, local: str, given: str = "", family: str = "", *,
                 suspended: bool = False, archived: bool = False, admin: bool = False,
                 org_unit: str = "/", domain: str | None = None) -> str:
        uid = f"10{next(self._ids):019d}"
        email = f"{local}@{domain or self.domain}"
        given = given or local.capitalize()
        family = family or "Example"
        with self.lock:
            self.users[uid] = {
                "kind": "admin#directory#user", "id": uid, "primaryEmail": email,
                "name": {"givenName": given, "familyName": family,
                         "fullName": f"{given} {family}"},
                "isAdmin": admin, "isDelegatedAdmin": False,
                "lastLoginTime": "2026-11-01T09:00:00.000Z",
                "creationTime": "2024-01-15T10:00:00.000Z", "agreedToTerms": True,
                "suspended": False, "archived": archived, "changePasswordAtNextLogin": False,
                "ipWhitelisted": False, "emails": [{"address": email, "primary": True}],
                "customerId": self.customer_id, "orgUnitPath": org_unit,
                "isMailboxSetup": True, "isEnrolledIn2Sv": False, "isEnforcedIn2Sv": False,
                "includeInGlobalAddressList": True,
            }
            self.set_suspended(uid, suspended, audit=False)
            self.audit("USER_SETTINGS", "CREATE_USER", USER_EMAIL=email)
        return uid

    def set_suspended(self, uid: str, suspended: bool, *, audit: bool = True) -> None:
        with self.lock:
            user = self.users[uid]
            user["suspended"] = suspended
            user.pop("suspensionReason", None)
            if suspended:
                user["suspensionReason"] = "ADMIN"
            if audit:
                self.audit("USER_SETTINGS", "SUSPEND_USER" if suspended else "UNSUSPEND_USER",
                           USER_EMAIL=user["primaryEmail"])

    def set_profile(self, uid: str, **fields: Any) -> None:
        """Set user resource fields as the Directory API holds them (users resource:
        ``organizations``, ``phones``, ``relations``, ``externalIds``, ``customSchemas``...);
        None removes one."""
        with self.lock:
            user = self.users[uid]
            for key, value in fields.items():
                if value is None:
                    user.pop(key, None)
                else:
                    user[key] = value

    def set_archived(self, uid: str, archived: bool) -> None:
        with self.lock:
            self.users[uid]["archived"] = archived
            self.audit("USER_SETTINGS", "ARCHIVE_USER" if archived else "UNARCHIVE_USER",
                       USER_EMAIL=self.users[uid]["primaryEmail"])

    def rename_user(self, uid: str, local: str) -> None:
        with self.lock:
            old = self.users[uid]["primaryEmail"]
            email = f"{local}@{self.domain}"
            self.users[uid]["primaryEmail"] = email
            self.users[uid]["emails"] = [{"address": email, "primary": True}]
            for members in self.members.values():
                for m in members:
                    if m["id"] == uid:
                        m["email"] = email
            self.audit("USER_SETTINGS", "RENAME_USER", USER_EMAIL=old, NEW_VALUE=email)

    def set_name(self, uid: str, given: str, family: str) -> None:
        with self.lock:
            self.users[uid]["name"] = {"givenName": given, "familyName": family,
                                       "fullName": f"{given} {family}"}
            self.audit("USER_SETTINGS", "CHANGE_FIRST_NAME",
                       USER_EMAIL=self.users[uid]["primaryEmail"], NEW_VALUE=given)

    def delete_user(self, uid: str) -> None:
        with self.lock:
            user = self.users.pop(uid)
            for members in self.members.values():
                members[:] = [m for m in members if m["id"] != uid]
            self.audit("USER_SETTINGS", "DELETE_USER", USER_EMAIL=user["primaryEmail"])

    def add_group(self, local: str, name: str = "") -> str:
        gid = f"0{next(self._ids):02d}x8tuzt3hqdv5k"[:15]
        with self.lock:
            self.groups[gid] = {
                "kind": "admin#directory#group", "id": gid, "email": f"{local}@{self.domain}",
                "name": name or local.capitalize(), "description": "", "adminCreated": True,
                "nonEditableAliases": [f"{local}@{self.domain}.test-google-a.com"],
            }
            self.members[gid] = []
            self.audit("GROUP_SETTINGS", "CREATE_GROUP", GROUP_EMAIL=f"{local}@{self.domain}")
        return gid

    def rename_group(self, gid: str, name: str) -> None:
        with self.lock:
            self.groups[gid]["name"] = name
            self.audit("GROUP_SETTINGS", "CHANGE_GROUP_NAME",
                       GROUP_EMAIL=self.groups[gid]["email"], NEW_VALUE=name)

    def delete_group(self, gid: str) -> None:
        with self.lock:
            group = self.groups.pop(gid)
            self.members.pop(gid)
            for members in self.members.values():
                members[:] = [m for m in members if m["id"] != gid]
            self.audit("GROUP_SETTINGS", "DELETE_GROUP", GROUP_EMAIL=group["email"])

    def add_member(self, gid: str, member_id: str, role: str = "MEMBER") -> None:
        """Add a user or a group (by id) of this account."""
        with self.lock:
            if member_id in self.users:
                user = self.users[member_id]
                member = {"email": user["primaryEmail"], "type": "USER",
                          "status": "SUSPENDED" if user["suspended"] else "ACTIVE"}
            else:
                member = {"email": self.groups[member_id]["email"], "type": "GROUP"}
            self._append(gid, {"id": member_id, "role": role, **member})
            self.audit("GROUP_SETTINGS", "ADD_GROUP_MEMBER",
                       GROUP_EMAIL=self.groups[gid]["email"], USER_EMAIL=member["email"])

    def add_external_member(self, gid: str, email: str) -> str:
        """A user of another domain (a consumer or other-company Google account)."""
        mid = f"11{next(self._ids):019d}"
        self._append(gid, {"id": mid, "email": email, "role": "MEMBER", "type": "USER",
                           "status": "ACTIVE"})
        return mid

    def add_external_group_member(self, gid: str, email: str) -> str:
        """A group of another account nested here; members.list on it answers 404."""
        mid = f"0{next(self._ids):02d}zz9other9acct"[:15]
        self._append(gid, {"id": mid, "email": email, "role": "MEMBER", "type": "GROUP"})
        return mid

    def add_customer_member(self, gid: str) -> None:
        """The whole account as one member (Groups: "all users in the organization")."""
        self._append(gid, {"id": self.customer_id, "role": "MEMBER", "type": "CUSTOMER"})

    def remove_member(self, gid: str, member_id: str) -> None:
        with self.lock:
            gone = [m for m in self.members[gid] if m["id"] == member_id]
            self.members[gid] = [m for m in self.members[gid] if m["id"] != member_id]
            for m in gone:
                self.audit("GROUP_SETTINGS", "REMOVE_GROUP_MEMBER",
                           GROUP_EMAIL=self.groups[gid]["email"],
                           USER_EMAIL=m.get("email") or m["id"])

    def audit(self, kind: str, name: str, **parameters: str) -> dict[str, Any]:
        """Append an Activity (Reports API, Activity resource) by the account's admin."""
        with self.lock:
            now = time.time()
            stamp = datetime.fromtimestamp(now, UTC)
            activity = {
                "kind": "admin#reports#activity",
                "id": {"time": stamp.strftime("%Y-%m-%dT%H:%M:%S.")
                       + f"{stamp.microsecond // 1000:03d}Z",
                       "uniqueQualifier": str(-next(self._ids) * 7919 % 2**62),
                       "applicationName": "admin", "customerId": self.customer_id},
                "etag": "",
                "actor": {"callerType": "USER", "email": f"admin@{self.domain}",
                          "profileId": "100000000000000000001"},
                "ipAddress": "127.0.0.1",
                "events": [{"type": kind, "name": name, "parameters": [
                    {"name": k, "value": v} for k, v in parameters.items()]}],
                "_visible_at": now + self.audit_lag,
            }
            activity["etag"] = _etag(activity["id"])
            self.activities.append(activity)
            return activity

    def fail(self, operation: str, status: int = 503, reason: str = "backendError",
             times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next calls of ``operation`` (``users.list``, ``token``...) with errors."""
        with self.lock:
            self.faults.append(Fault(operation, status, reason, times, retry_after))

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    def _append(self, gid: str, member: dict[str, Any]) -> None:
        with self.lock:
            member = {"kind": "admin#directory#member", **member}
            member["etag"] = _etag(member)
            self.members[gid].append(member)

    # ------------------------------------------------------------ the API

    def fault_for(self, operation: str) -> Answer | None:
        with self.lock:
            for fault in self.faults:
                if fault.operation == operation and fault.times > 0:
                    fault.times -= 1
                    break
            else:
                return None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if fault.reason in ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"):
            status, body = errors.rate_limited(fault.reason)
            return status, headers, body
        if fault.status in (500, 503):
            return fault.status, headers, errors.backend_error(fault.status)
        return fault.status, headers, errors.api_error(fault.status, fault.reason, fault.reason)

    def user_exists(self, key: str) -> bool:
        return self._user(key) is not None

    def handle(self, method: str, path: str, params: dict[str, str],
               authorization: str | None) -> Answer:
        """Route one API request; the server does transport, this does semantics."""
        if method != "GET" or not path.startswith((API, REPORTS)):
            return 404, {}, errors.not_found(path)
        # Path segments arrive percent-encoded (users/alice%40example.com).
        parts = [unquote(p) for p in path[len(API):].strip("/").split("/")]
        if path.startswith(REPORTS):
            parts = [unquote(p) for p in path[len(REPORTS):].strip("/").split("/")]
            if len(parts) != 3 or parts[1] != "applications":
                return 404, {}, errors.not_found(path)
            op, scopes = "activities.list", REPORT_SCOPES
        elif parts == ["users"]:
            op, scopes = "users.list", USER_SCOPES
        elif len(parts) == 2 and parts[0] == "users":
            op, scopes = "users.get", USER_SCOPES
        elif parts == ["groups"]:
            op, scopes = "groups.list", GROUP_SCOPES
        elif len(parts) == 2 and parts[0] == "groups":
            op, scopes = "groups.get", GROUP_SCOPES
        elif len(parts) == 3 and parts[0] == "groups" and parts[2] == "members":
            op, scopes = "members.list", MEMBER_SCOPES
        else:
            return 404, {}, errors.not_found(path)
        grant = self.oauth.grant_for(authorization)
        if grant is None:
            return 401, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}, \
                errors.unauthenticated()
        if not grant.scopes & scopes:
            return 403, {}, errors.insufficient_scopes()
        admin = self._user(grant.subject) if grant.subject else None
        if admin is None or not admin.get("isAdmin") or admin.get("suspended"):
            return 403, {}, errors.not_authorized()
        fault = self.fault_for(op)
        if fault is not None:
            return fault
        with self.lock:
            self.calls.append((op, dict(params)))
            try:
                if op == "users.list":
                    status, body = self._list_users(params)
                elif op == "users.get":
                    user = self._user(parts[1])
                    status, body = (200, dict(user)) if user else \
                        (404, errors.not_found("userKey"))
                elif op == "groups.list":
                    status, body = self._list_groups(params)
                elif op == "groups.get":
                    group = next((g for g in self.groups.values()
                                  if parts[1] in (g["id"], g["email"])), None)
                    status, body = (200, dict(group)) if group else \
                        (404, errors.not_found("groupKey"))
                elif op == "activities.list":
                    status, body = self._list_activities(parts[0], parts[2], params)
                else:
                    status, body = self._list_members(parts[1], params)
                if status == 200 and params.get("fields"):
                    body = query.select(body, params["fields"])
            except query.InvalidQuery:
                status, body = 400, errors.api_error(400, "Invalid Input", "invalid")
        return status, {}, body

    def _scope(self, params: dict[str, str]) -> tuple[str | None, dict[str, Any] | None]:
        """The domain to restrict to (None = every domain), or an error body."""
        customer, domain = params.get("customer"), params.get("domain")
        if not customer and not domain:
            return None, errors.bad_request()
        if customer and customer not in ("my_customer", self.customer_id):
            return None, errors.not_authorized()
        if domain and domain.casefold() != self.domain:
            return None, errors.not_authorized()
        return (domain.casefold() if domain else None), None

    def _list_users(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        domain, err = self._scope(params)
        if err:
            return err["error"]["code"], err
        preds = query.parse(params.get("query", ""), {
            "email": lambda u: [u["primaryEmail"], *[e["address"] for e in u["emails"]]],
            "givenName": lambda u: u["name"]["givenName"],
            "familyName": lambda u: u["name"]["familyName"],
            "name": lambda u: u["name"]["fullName"],
            "isAdmin": lambda u: u["isAdmin"], "isSuspended": lambda u: u["suspended"],
            "isArchived": lambda u: u["archived"], "orgUnitPath": lambda u: u["orgUnitPath"],
        })
        items = [u for u in sorted(self.users.values(), key=lambda u: u["primaryEmail"])
                 if (domain is None or u["primaryEmail"].endswith("@" + domain))
                 and all(p(u) for p in preds)]
        if params.get("projection", "basic") == "basic":
            # users.list: customSchemas only with projection=custom or full.
            items = [{k: v for k, v in u.items() if k != "customSchemas"} for u in items]
        return self._page("admin#directory#users", "users", items, params, 500, 100)

    def _list_groups(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        domain, err = self._scope(params)
        if err:
            return err["error"]["code"], err
        preds = query.parse(params.get("query", ""), {
            "email": lambda g: g["email"], "name": lambda g: g["name"],
            "memberKey": lambda g: [k for m in self.members[g["id"]]
                                    for k in (m["id"], m.get("email", ""))],
        })
        items = []
        for g in sorted(self.groups.values(), key=lambda g: g["email"]):
            if (domain is None or g["email"].endswith("@" + domain)) and all(p(g) for p in preds):
                items.append({**g, "directMembersCount": str(len(self.members[g["id"]])),
                              "etag": _etag(g)})
        return self._page("admin#directory#groups", "groups", items, params, 200, 200)

    def _list_activities(self, user_key: str, app: str, params: dict[str, str],
                         ) -> tuple[int, dict[str, Any]]:
        """activities.list: newest first; startTime/endTime (RFC 3339); eventName; paged."""
        if user_key != "all" or app != "admin":
            return 400, errors.api_error(400, "Invalid Input", "invalid")
        now = time.time()

        def when(text: str) -> datetime:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))

        try:
            start = when(params["startTime"]) if params.get("startTime") else None
            end = when(params["endTime"]) if params.get("endTime") else None
        except ValueError:
            return 400, errors.api_error(400, "Invalid value for startTime", "invalid")
        if start is not None and start > datetime.fromtimestamp(now, UTC):
            return 400, errors.api_error(400, "Start time must be before the current time",
                                         "invalid")
        items = [{k: v for k, v in a.items() if not k.startswith("_")}
                 for a in reversed(self.activities) if a["_visible_at"] <= now
                 and (start is None or when(a["id"]["time"]) >= start)
                 and (end is None or when(a["id"]["time"]) < end)
                 and (not params.get("eventName")
                      or any(e["name"] == params["eventName"] for e in a["events"]))]
        return self._page("admin#reports#activities", "items", items, params, 1000, 1000)

    def _list_members(self, key: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        gid = next((g["id"] for g in self.groups.values()
                    if key in (g["id"], g["email"])), None)
        if gid is None:
            return 404, errors.not_found("groupKey")
        roles = {r.strip().upper() for r in params.get("roles", "").split(",") if r.strip()}
        items = [m for m in self.members[gid] if not roles or m["role"] in roles]
        return self._page("admin#directory#members", "members", items, params, 200, 200)

    def _page(self, kind: str, name: str, items: list[dict[str, Any]], params: dict[str, str],
              limit: int, default: int) -> tuple[int, dict[str, Any]]:
        """One page; the token binds the offset to the request's other parameters."""
        try:
            size = int(params.get("maxResults", default))
        except ValueError:
            size = -1
        if not 1 <= size <= limit:
            return 400, errors.api_error(
                400, f"Invalid value '{params.get('maxResults')}'. Values must be within the "
                f"range: [1, {limit}]", "invalidParameter", location="maxResults",
                locationType="parameter")
        fingerprint = _fingerprint(kind, params)
        offset = 0
        if params.get("pageToken"):
            try:
                data = json.loads(base64.urlsafe_b64decode(params["pageToken"]))
                offset, bound = int(data["o"]), data["f"]
            except (ValueError, KeyError, TypeError):
                return 400, errors.api_error(400, "Invalid Input", "invalid")
            if bound != fingerprint:
                return 400, errors.api_error(400, "Invalid Input", "invalid")
        chunk = items[offset:offset + size]
        body: dict[str, Any] = {"kind": kind, "etag": _etag(chunk), name: chunk}
        if offset + size < len(items):
            token = json.dumps({"o": offset + size, "f": fingerprint}).encode()
            body["nextPageToken"] = base64.urlsafe_b64encode(token).decode()
        if not chunk:
            del body[name]              # Google omits an empty list
        return 200, body

    def _user(self, key: str) -> dict[str, Any] | None:
        folded = key.casefold()
        for user in self.users.values():
            if key == user["id"] or folded in (e["address"].casefold() for e in user["emails"]):
                return user
        return None


def _fingerprint(kind: str, params: dict[str, str]) -> str:
    keep = {k: v for k, v in params.items()
            if k not in ("pageToken", "alt", "prettyPrint", "fields")}
    return hashlib.sha256(json.dumps([kind, keep], sort_keys=True).encode()).hexdigest()[:16]


def _etag(value: Any) -> str:
    return '"' + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:27] + '"'
