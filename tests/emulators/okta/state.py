"""The emulated Okta org: users, groups, memberships, credentials, rate limits.

Objects are kept in the shape the Management API returns them (Okta API
reference, User and Group objects), so handlers only select and page. Tests
change the org between syncs through the methods below; every mutation bumps
``lastUpdated`` as Okta does.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

USER_STATUSES = ("STAGED", "PROVISIONED", "ACTIVE", "RECOVERY", "PASSWORD_EXPIRED",
                 "LOCKED_OUT", "SUSPENDED", "DEPROVISIONED")
GROUP_TYPES = ("OKTA_GROUP", "APP_GROUP", "BUILT_IN")

LinkMode = Literal["separate", "separate-next-first", "single", "single-next-first"]
"""How Link headers are sent: one header line per link (self first, as Okta does, or
next first), or all links comma-joined in one header (RFC 8288 3), in either order."""


_last_stamp = [datetime.min.replace(tzinfo=UTC)]
_stamp_lock = threading.Lock()


def now_iso() -> str:
    """Okta's timestamp format (ISO 8601 UTC, milliseconds), strictly increasing here so
    two changes in one millisecond still differ, as two real edits would in practice."""
    with _stamp_lock:
        now = max(datetime.now(UTC), _last_stamp[0] + timedelta(milliseconds=1))
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        _last_stamp[0] = now
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class OAuthClient:
    """A registered API service app: its public key (PEM) and granted Okta scopes."""

    client_id: str
    public_key_pem: bytes
    scopes: frozenset[str]
    kid: str | None = None
    dpop: bool = False
    """*Require DPoP header in token requests* (on by default for new apps in the console)."""


@dataclass
class RateLimit:
    """A fixed window per org: ``limit`` requests per ``window`` seconds."""

    limit: int = 600
    window: int = 60
    used: int = 0
    reset_at: int = 0
    """UTC epoch seconds when the current window ends (X-Rate-Limit-Reset)."""
    drain_every: int = 0
    """Other integrations share the org's budget: after every Nth request of ours they
    spend the rest of the window, so the next call meets a 429 its headers did not predict."""
    served: int = 0

    def take(self, now: float) -> tuple[bool, int, int]:
        """Count one request: (allowed, remaining, reset epoch)."""
        if now >= self.reset_at:
            self.used = 0
            self.reset_at = math.ceil(now) + self.window
        if self.used >= self.limit:
            return False, 0, self.reset_at
        self.used += 1
        self.served += 1
        remaining = self.limit - self.used
        if self.drain_every and self.served % self.drain_every == 0:
            self.used = self.limit
        return True, remaining, self.reset_at


@dataclass
class OktaState:
    """Everything the emulator serves; tests mutate it between syncs."""

    tokens: set[str] = field(default_factory=lambda: {"test-ssws-token"})
    """Valid API tokens (``Authorization: SSWS <token>``)."""
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    access_tokens: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict)
    """Issued bearer tokens -> (scopes, expiry epoch)."""
    used_jti: set[str] = field(default_factory=set)
    dpop_nonce: str = "emulated-dpop-nonce-1"
    """The DPoP-Nonce the org currently demands (RFC 9449 8)."""
    dpop_bound: dict[str, str] = field(default_factory=dict)
    """DPoP-bound access token -> JWK thumbprint of its proof key."""
    dpop_jti: set[str] = field(default_factory=set)
    resource_nonce_required: bool = False
    """Also demand the nonce in proofs sent to /api/v1 (401 use_dpop_nonce first)."""
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    """Group id -> user ids in insertion order."""
    link_mode: LinkMode = "separate"
    trailing_empty_page: bool = False
    """Advertise a next page after a full last page whose answer is ``[]`` (as Okta can)."""
    rate: RateLimit = field(default_factory=RateLimit)
    throttled: int = 0
    """How many requests were answered 429."""
    forbidden: bool = False
    """Answer API calls with 403 E0000006, as for a token whose admin lost its role."""
    token_lifetime: int = 3600
    clock: Callable[[], float] = time.time
    """The org's time (epoch seconds): rate-limit windows, the Date header, token expiry."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(method, path?query) of every request, for assertions."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """The System Log: LogEvent objects in the order Okta persisted them."""
    log_retention: timedelta = timedelta(days=90)
    """System Log events older than this are gone (Okta keeps 90 days)."""
    log_failure: int = 0
    """Answer the System Log with this status (400, 500) instead, for fault tests."""
    log_delay: float = 0.0
    """Seconds between an event's ``published`` time and its persistence: the System Log
    is near real-time, so a poll may see an event later than one published after it."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------- users

    def add_user(self, email: str, first: str = "", last: str = "", *,
                 status: str = "ACTIVE", login: str | None = None,
                 **profile: Any) -> str:
        """Create a user with the given status; returns its id (``00u...``)."""
        assert status in USER_STATUSES, status
        with self.lock:
            uid = f"00u{next(self._ids):017d}"
            stamp = now_iso()
            self.users[uid] = {
                "id": uid,
                "status": status,
                "created": stamp,
                "activated": stamp if status != "STAGED" else None,
                "statusChanged": stamp,
                "lastLogin": None,
                "lastUpdated": stamp,
                "passwordChanged": None,
                "type": {"id": "oty00000000000000000"},
                "profile": {"firstName": first or None, "lastName": last or None,
                            "mobilePhone": None, "secondEmail": None,
                            "login": login or email, "email": email, **profile},
                "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
                "_links": {"self": {"href": f"/api/v1/users/{uid}"}},
            }
            self.log("user.lifecycle.create", "Create Okta user", self._user_target(uid))
            if status not in ("STAGED",):
                self.log("user.lifecycle.activate", "Activate Okta user",
                         self._user_target(uid))
            return uid

    def set_status(self, uid: str, status: str) -> None:
        """Lifecycle change (suspend, unsuspend, deactivate, reactivate...)."""
        assert status in USER_STATUSES, status
        with self.lock:
            user = self.users[uid]
            before = user["status"]
            user["status"] = status
            user["statusChanged"] = user["lastUpdated"] = now_iso()
            kind, words = _lifecycle(before, status)
            self.log(kind, words, self._user_target(uid))

    def update_profile(self, uid: str, **profile: Any) -> None:
        with self.lock:
            self.users[uid]["profile"].update(profile)
            self.users[uid]["lastUpdated"] = now_iso()
            self.log("user.account.update_profile", "Update user profile for Okta",
                     self._user_target(uid))

    def delete_user(self, uid: str) -> None:
        """Okta deletes only DEPROVISIONED users; the record disappears entirely."""
        with self.lock:
            assert self.users[uid]["status"] == "DEPROVISIONED", "deactivate first"
            target = self._user_target(uid)
            del self.users[uid]
            self.log("user.lifecycle.delete.initiated", "Delete Okta user", target)
            for ids in self.members.values():
                if uid in ids:
                    ids.remove(uid)

    # ------------------------------------------------------------- groups

    def add_group(self, name: str, *, type: str = "OKTA_GROUP", description: str = "",
                  members: list[str] | None = None) -> str:
        assert type in GROUP_TYPES, type
        with self.lock:
            gid = f"00g{next(self._ids):017d}"
            stamp = now_iso()
            object_class = {"OKTA_GROUP": "okta:user_group",
                            "APP_GROUP": "okta:windows_security_principal",
                            "BUILT_IN": "okta:user_group"}[type]
            self.groups[gid] = {
                "id": gid,
                "created": stamp,
                "lastUpdated": stamp,
                "lastMembershipUpdated": stamp,
                "objectClass": [object_class],
                "type": type,
                "profile": {"name": name, "description": description or None},
                "_links": {"users": {"href": f"/api/v1/groups/{gid}/users"}},
            }
            self.members[gid] = list(members or [])
            self.log("group.lifecycle.create", "Create Okta group", self._group_target(gid))
            return gid

    def add_member(self, gid: str, uid: str) -> None:
        with self.lock:
            if uid not in self.members[gid]:
                self.members[gid].append(uid)
            self.groups[gid]["lastMembershipUpdated"] = now_iso()
            self.log("group.user_membership.add", "Add user to group membership",
                     self._user_target(uid), self._group_target(gid))

    def remove_member(self, gid: str, uid: str) -> None:
        with self.lock:
            self.members[gid].remove(uid)
            self.groups[gid]["lastMembershipUpdated"] = now_iso()
            self.log("group.user_membership.remove", "Remove user from group membership",
                     self._user_target(uid), self._group_target(gid))

    def rename_group(self, gid: str, name: str) -> None:
        with self.lock:
            self.groups[gid]["profile"]["name"] = name
            self.groups[gid]["lastUpdated"] = now_iso()
            self.log("group.profile.update", "Update Okta group profile",
                     self._group_target(gid))

    def delete_group(self, gid: str) -> None:
        """The group disappears; only the System Log tells (group.lifecycle.delete)."""
        with self.lock:
            target = self._group_target(gid)
            del self.groups[gid]
            del self.members[gid]
            self.log("group.lifecycle.delete", "Delete Okta group", target)

    # ------------------------------------------------------------- system log

    def log(self, event_type: str, message: str, *targets: dict[str, Any],
            published: datetime | None = None) -> dict[str, Any]:
        """Append a LogEvent (System Log API, LogEvent object) done by the org admin."""
        with self.lock:
            stamp = now_iso() if published is None else (
                published.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{published.microsecond // 1000:03d}Z")
            event = {
                "uuid": str(uuid.uuid4()), "published": stamp, "eventType": event_type,
                "version": "0", "severity": "INFO", "displayMessage": message,
                "legacyEventType": None,
                "actor": {"id": "00u00000000000admin", "type": "User",
                          "alternateId": "admin@example.com", "displayName": "Org Admin",
                          "detailEntry": None},
                "client": {"ipAddress": "127.0.0.1", "zone": "null", "device": "Unknown"},
                "outcome": {"result": "SUCCESS", "reason": None},
                "transaction": {"type": "WEB", "id": uuid.uuid4().hex[:27], "detail": {}},
                "target": list(targets),
                "_persisted": self.clock() + self.log_delay,
            }
            self.events.append(event)
            return event

    def _user_target(self, uid: str) -> dict[str, Any]:
        profile = self.users[uid]["profile"]
        return {"id": uid, "type": "User", "alternateId": profile.get("login"),
                "displayName": f"{profile.get('firstName') or ''} "
                               f"{profile.get('lastName') or ''}".strip(),
                "detailEntry": None}

    def _group_target(self, gid: str) -> dict[str, Any]:
        return {"id": gid, "type": "UserGroup", "alternateId": "unknown",
                "displayName": self.groups[gid]["profile"]["name"], "detailEntry": None}

    # ------------------------------------------------------------- helpers

    def issue_token(self, scopes: frozenset[str]) -> str:
        with self.lock:
            token = f"eyJ.emulated.{next(self._ids)}"
            self.access_tokens[token] = (scopes, self.clock() + self.token_lifetime)
            return token

    def api_requests(self, prefix: str = "/api/v1/") -> list[str]:
        with self.lock:
            return [p for _, p in self.requests if p.startswith(prefix)]


def _lifecycle(before: str, after: str) -> tuple[str, str]:
    """The System Log event type of a status change (Okta event types catalog)."""
    if after == "SUSPENDED":
        return "user.lifecycle.suspend", "Suspend Okta user"
    if before == "SUSPENDED":
        return "user.lifecycle.unsuspend", "Unsuspend Okta user"
    if after == "DEPROVISIONED":
        return "user.lifecycle.deactivate", "Deactivate Okta user"
    if before == "DEPROVISIONED":
        return "user.lifecycle.reactivate", "Reactivate Okta user"
    if before == "STAGED":
        return "user.lifecycle.activate", "Activate Okta user"
    return "user.account.update_status", "Update user status"
