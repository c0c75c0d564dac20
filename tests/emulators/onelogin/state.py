"""The emulated OneLogin account: users, roles, groups, API credentials, tokens, faults.

Tests change it between (or during) reads; every method takes the lock, so the
server threads always see a consistent account. Field names and value ranges follow
OneLogin's API reference (api-docs/2/users/list-users: ``status`` 0..8 without 6,
``state`` 0..3, ``group_id`` int or null; api-docs/2/roles/get-role-users).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

VALID_STATUSES = frozenset({0, 1, 2, 3, 4, 5, 7, 8})

EVENT_TYPES = {
    # api-docs/1/events/event-types shows ids 1-5 in its sample; the rest are this
    # emulator's (the connector resolves types by name through /api/1/events/types).
    1: ("APP_ADDED_TO_ROLE", "App %app% added to role %role%"),
    2: ("APP_REMOVED_FROM_ROLE", "App %app% removed from role %role%"),
    3: ("USER_ASSUMED_USER", "%actor_user% assumed %user%"),
    4: ("USER_ASSIGNED_ROLE", "Assigned %role% to user %user%"),
    5: ("USER_LOGGED_INTO_ONELOGIN", "%user% logged into OneLogin"),
    11: ("USER_UPDATED", "%actor_user% updated %user%"),
    13: ("USER_CREATED", "%actor_user% created user %user%"),
    17: ("USER_DELETED", "%actor_user% deleted user %user%"),
    18: ("USER_REMOVED_FROM_ROLE", "Removed %role% from user %user%"),
    19: ("ROLE_CREATED", "%actor_user% created role %role%"),
    20: ("ROLE_DELETED", "%actor_user% deleted role %role%"),
}
TYPE_IDS = {name: tid for tid, (name, _) in EVENT_TYPES.items()}


@dataclass
class Fault:
    """Make one page of one list endpoint fail ``times`` times with ``status``."""

    path: str
    page: int
    times: int
    status: int = 503
    retry_after: str | None = "0"
    served: int = 0


@dataclass
class Token:
    value: str
    client_id: str
    created: float
    expires_at: float


@dataclass
class Account:
    """Everything the emulator serves. Ids are integers, as OneLogin's are."""

    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    role_members: dict[int, set[int]] = field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)
    token_ttl: int = 36000
    """Seconds a token lives (docs: 10 hours)."""
    delay: float = 0.0
    """Seconds each resource request takes (to let tokens age during a read)."""
    clock: Callable[[], float] = time.time
    """The server's time, for token lifetimes (a test may replace it)."""
    sleep: Callable[[float], None] = time.sleep
    """How a request waits out ``delay`` (with a replaced clock: move it instead)."""
    tokens: dict[str, Token] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    hooks: dict[tuple[str, int], Callable[[], None]] = field(default_factory=dict)
    """Actions run when the n-th GET of a path arrives, before it is answered."""
    token_requests: int = 0
    rejected_tokens: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    query_log: list[tuple[str, str]] = field(default_factory=list)
    """(path, query string) of every GET, for assertions on what was asked."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """The Events API's log (api-docs/1/events/event-resource), oldest first."""
    rate_limit: int = 5000
    """X-RateLimit-Limit: calls per window (get-rate-limit: 5,000 per hour)."""
    rate_window: int = 3600
    rate_used: int = 0
    rate_reset_at: float = 0.0
    events_failure: int = 0
    """Answer /api/1/events with this status instead (fault tests)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_id: int = 40_000_000
    _next_event: int = 900_000_000
    _last_stamp: float = 0.0
    version: int = 0
    """Bumped by every change to users (the server caches its sorted user list on it)."""

    # ------------------------------------------------------------------ test helpers

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 17
            return self._next_id

    def add_client(self, client_id: str, secret: str) -> None:
        with self.lock:
            self.clients[client_id] = secret

    def add_user(self, email: str | None, *, status: int = 1, username: str | None = None,
                 firstname: str = "", lastname: str = "", group_id: int | None = None,
                 custom: dict[str, str] | None = None, uid: int | None = None) -> int:
        if status not in VALID_STATUSES:
            raise ValueError(f"OneLogin has no user status {status}")
        with self.lock:
            uid = uid if uid is not None else self.new_id()
            stamp = self.stamp()
            self.users[uid] = {
                "id": uid, "email": email, "username": username,
                "firstname": firstname, "lastname": lastname,
                "status": status, "state": 1, "group_id": group_id,
                "directory_id": None, "external_id": None, "distinguished_name": None,
                "samaccountname": None, "userprincipalname": None, "member_of": None,
                "phone": None, "title": None, "department": None, "company": None,
                "comment": None, "manager_ad_id": None, "manager_user_id": None,
                "trusted_idp_id": None, "invalid_login_attempts": 0,
                "locked_until": None, "last_login": None, "activated_at": stamp,
                "invitation_sent_at": None, "password_changed_at": stamp,
                "created_at": stamp, "updated_at": stamp,
                "custom_attributes": dict(custom or {}),
            }
            self.version += 1
            self.log("USER_CREATED", user=uid)
            return uid

    def update_user(self, uid: int, **fields: Any) -> None:
        with self.lock:
            if "status" in fields and fields["status"] not in VALID_STATUSES:
                raise ValueError(f"OneLogin has no user status {fields['status']}")
            self.users[uid].update(fields)
            self.users[uid]["updated_at"] = self.stamp()
            self.version += 1
            self.log("USER_UPDATED", user=uid)

    def delete_user(self, uid: int) -> None:
        with self.lock:
            self.log("USER_DELETED", user=uid)
            del self.users[uid]
            self.version += 1
            for members in self.role_members.values():
                members.discard(uid)

    def add_role(self, name: str, members: Iterable[int] = (), rid: int | None = None) -> int:
        with self.lock:
            rid = rid if rid is not None else self.new_id()
            self.roles[rid] = {"id": rid, "name": name, "apps": []}
            self.role_members[rid] = set(members)
            self.log("ROLE_CREATED", role=rid)
            return rid

    def rename_role(self, rid: int, name: str) -> None:
        with self.lock:
            self.roles[rid]["name"] = name

    def delete_role(self, rid: int) -> None:
        with self.lock:
            self.log("ROLE_DELETED", role=rid)
            del self.roles[rid]
            del self.role_members[rid]

    def assign(self, rid: int, *uids: int) -> None:
        """Role assignment: the user's updated_at does not move; only an event tells."""
        with self.lock:
            for uid in uids:
                if uid not in self.role_members[rid]:
                    self.role_members[rid].add(uid)
                    self.log("USER_ASSIGNED_ROLE", user=uid, role=rid)

    def unassign(self, rid: int, *uids: int) -> None:
        with self.lock:
            for uid in uids:
                if uid in self.role_members[rid]:
                    self.role_members[rid].discard(uid)
                    self.log("USER_REMOVED_FROM_ROLE", user=uid, role=rid)

    # ------------------------------------------------------------------ events

    def stamp(self) -> str:
        """Now, as OneLogin writes times (UTC, milliseconds), strictly increasing."""
        with self.lock:
            now = max(self.clock(), self._last_stamp + 0.001)
            self._last_stamp = now
        return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now * 1000) % 1000:03d}Z")

    def log(self, name: str, *, user: int | None = None, role: int | None = None,
            group: int | None = None) -> dict[str, Any]:
        """Append an Event (api-docs/1/events/event-resource) done by the account admin."""
        with self.lock:
            self._next_event += 1
            u = self.users.get(user) if user is not None else None
            r = self.roles.get(role) if role is not None else None
            event = {
                "id": self._next_event, "created_at": self.stamp(), "account_id": 555555,
                "event_type_id": TYPE_IDS[name], "user_id": user,
                "user_name": (f"{u['firstname']} {u['lastname']}".strip() or u["email"])
                if u else None,
                "actor_user_id": 678, "actor_user_name": "Susan Boss", "actor_system": "",
                "role_id": role, "role_name": r["name"] if r else None,
                "group_id": group, "group_name": None, "app_id": None, "app_name": None,
                "ipaddr": "127.0.0.1", "notes": None, "otp_device_id": None,
                "otp_device_name": None, "policy_id": None, "policy_name": None,
                "custom_message": None, "directory_sync_run_id": None,
                "resolution": None, "client_id": None, "resource_type_id": None,
                "error_description": None, "assuming_acting_user_id": None,
                "proxy_ip": None, "risk_score": None, "risk_reasons": None,
                "risk_cookie_id": None, "browser_fingerprint": None, "directory_id": None,
                "operation_name": None,
            }
            self.events.append(event)
            return event

    def take_rate(self) -> tuple[int, int, int]:
        """Count one call: (limit, remaining, seconds until the window resets)."""
        with self.lock:
            now = self.clock()
            if now >= self.rate_reset_at:
                self.rate_used, self.rate_reset_at = 0, now + self.rate_window
            self.rate_used += 1
            return (self.rate_limit, max(0, self.rate_limit - self.rate_used),
                    max(0, int(self.rate_reset_at - now)))

    def add_group(self, name: str, gid: int | None = None) -> int:
        with self.lock:
            gid = gid if gid is not None else self.new_id()
            self.groups[gid] = {"id": gid, "name": name, "reference": None}
            return gid

    def fail(self, path: str, page: int, times: int, status: int = 503,
             retry_after: str | None = "0") -> Fault:
        """Make ``page`` (1-based) of list ``path`` answer ``status`` the next ``times`` times."""
        fault = Fault(path, page, times, status, retry_after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def on_request(self, path: str, n: int, action: Callable[[], None]) -> None:
        """Run ``action`` (e.g. delete a user) when the ``n``-th GET of ``path`` arrives."""
        with self.lock:
            self.hooks[(path, n)] = action

    def run_hooks(self, path: str) -> None:
        with self.lock:
            action = self.hooks.pop((path, self.page_requests(path)), None)
            if action is not None:
                action()

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # ------------------------------------------------------------------ server side

    def issue_token(self, client_id: str, now: float) -> Token:
        """Same credentials get the same token until it expires (generate-tokens page)."""
        with self.lock:
            self.token_requests += 1
            for tok in self.tokens.values():
                if tok.client_id == client_id and tok.expires_at > now:
                    return tok
            tok = Token(secrets.token_hex(32), client_id, now, now + self.token_ttl)
            self.tokens[tok.value] = tok
            return tok

    def token_valid(self, value: str, now: float) -> bool:
        with self.lock:
            tok = self.tokens.get(value)
            ok = tok is not None and tok.expires_at > now
            if not ok:
                self.rejected_tokens += 1
            return ok

    def take_fault(self, path: str, page: int) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path == path and fault.page == page and fault.served < fault.times:
                    fault.served += 1
                    return fault
            return None

    def page_requests(self, path: str) -> int:
        with self.lock:
            return sum(1 for _, p in self.requests if p == path)
