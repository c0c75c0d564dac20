"""What the okta connector keeps between runs for incremental reads.

Two savings, both optional (``incremental``):

- ``memberships``: a group's members are re-read only when its
  ``lastMembershipUpdated`` (Okta Group object) differs from the cached one; users
  are still read in full, so a deleted user can never linger.
- ``users``: additionally, users come from ``filter=lastUpdated gt "<since>"`` merged
  into the cached set. A user deleted outright between two runs is not seen until the
  next full read (``full_read_interval``), when it drops out as missing.
- ``feed``: users, groups and memberships all come from the change feed (stream.py),
  deletions included, merged into the cached users and groups.

``since`` is the server's clock (the ``Date`` header) at the start of the previous
read minus an overlap, so clock skew and writes racing the read are re-read, never
skipped. A cache written under other settings is ignored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CACHE_KEY = "okta.cache.v2"
OVERLAP = timedelta(minutes=5)


def okta_time(when: datetime) -> str:
    """Okta's timestamp format for lastUpdated filters: 2013-06-01T00:00:00.000Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{when.microsecond // 1000:03d}Z"


def fingerprint(*parts: object) -> str:
    """A short hash of the settings a cache depends on."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


@dataclass
class ReadCache:
    """Users and group memberships as of the previous successful read."""

    fingerprint: str
    full_at: float = 0.0
    """Epoch seconds (local clock) of the last full read."""
    since: str = ""
    """lastUpdated lower bound for the next incremental user read (server clock)."""
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    """Okta id -> the few user fields the connector maps (see OktaConnector._slim)."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Okta id -> {"stamp": lastMembershipUpdated, "members": [user ids], "name": name}."""
    position: str = ""
    """Where the change feed stands (stream.py), in ``incremental = "feed"`` mode."""

    @classmethod
    def load(cls, value: Any, expected: str) -> ReadCache | None:
        """The stored cache if it is well-formed and was written under the same settings."""
        if not isinstance(value, dict) or value.get("fingerprint") != expected:
            return None
        try:
            return cls(fingerprint=expected, full_at=float(value["full_at"]),
                       since=str(value["since"]), users=dict(value["users"]),
                       groups=dict(value["groups"]), position=str(value.get("position", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "full_at": self.full_at, "since": self.since,
                "users": self.users, "groups": self.groups, "position": self.position}

    def members(self, gid: str, stamp: str) -> frozenset[str] | None:
        """Cached members of a group whose lastMembershipUpdated is still ``stamp``."""
        entry = self.groups.get(gid)
        if not stamp or not isinstance(entry, dict) or entry.get("stamp") != stamp:
            return None
        return frozenset(str(m) for m in entry.get("members", []))


def next_since(server_start: datetime) -> str:
    return okta_time(server_start - OVERLAP)
