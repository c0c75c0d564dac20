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
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_id: int = 40_000_000

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
            stamp = "2026-01-15T10:00:00.000Z"
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
            return uid

    def update_user(self, uid: int, **fields: Any) -> None:
        with self.lock:
            if "status" in fields and fields["status"] not in VALID_STATUSES:
                raise ValueError(f"OneLogin has no user status {fields['status']}")
            self.users[uid].update(fields)
            self.users[uid]["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def delete_user(self, uid: int) -> None:
        with self.lock:
            del self.users[uid]
            for members in self.role_members.values():
                members.discard(uid)

    def add_role(self, name: str, members: Iterable[int] = (), rid: int | None = None) -> int:
        with self.lock:
            rid = rid if rid is not None else self.new_id()
            self.roles[rid] = {"id": rid, "name": name, "apps": []}
            self.role_members[rid] = set(members)
            return rid

    def assign(self, rid: int, *uids: int) -> None:
        with self.lock:
            self.role_members[rid].update(uids)

    def unassign(self, rid: int, *uids: int) -> None:
        with self.lock:
            self.role_members[rid].difference_update(uids)

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
