"""What both state stores keep, as frozen records, and the journal's shared rules."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ..outcome import Outcome
from ..plan import (
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    RelinkGroup,
    RelinkUser,
)

GROUP_ROWS = 1000
"""A journal group is written when it holds this many rows..."""
GROUP_SECONDS = 0.2
"""... or when a row arrives this long after the group's first one (state/__init__)."""


@dataclass(frozen=True, slots=True)
class Marker:
    """A source's change marker, taken before a good full read."""

    value: str
    config: str
    """The digest of the configuration the read was made under."""
    read_at: float
    """When (epoch seconds): a marker is trusted for the source's full_read_interval."""


@dataclass(frozen=True, slots=True)
class GoodRun:
    """What the runner keeps of a profile's last good run (ok or no changes)."""

    source_digest: str | None = None
    """``config:snapshot`` digest of the directory the server was made to hold: an equal
    digest next time means nothing to do, without reading the server."""
    users: int | None = None
    """Usable users that read held (the guard compares the next read with it)."""
    unusable: int | None = None
    """Users it skipped for a data problem (no, invalid or duplicate email)."""
    marker: Marker | None = None
    """The source's change marker taken before that read, if it has one."""
    group_mapping: dict[str, Any] | None = None
    """The profile's ``[target.group_mapping]`` then: how the groups on the server were
    keyed, so a changed mapping finds them (rekey.py)."""


GOOD_KEYS = ("applied_source_digest", "last_source_users", "last_source_unusable",
             "source_marker", "group_mapping")
"""Where a GoodRun lives in ``meta`` (the names earlier versions wrote: no migration)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as `history` shows it."""

    id: str
    profile: str
    command: str
    started: float
    finished: float | None
    status: str
    counts: dict[str, int]
    error: str
    replica: str = ""
    """The daemon replica that ran it (PostgreSQL); empty for a local run."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds, or last held, a profile's lock (several replicas on PostgreSQL)."""

    profile: str
    replica: str
    since: float
    """When that replica took the lock (epoch seconds)."""
    held: bool
    """True while the lock is held now; False: the replica that ran it last."""
    tick: str = ""
    """The last schedule tick claimed for the profile (daemon replicas)."""


@dataclass(frozen=True, slots=True)
class Replica:
    """A daemon process sharing the profiles, as its heartbeat row says."""

    id: str
    host: str
    pid: int
    started: float
    seen: float
    """Its last heartbeat (epoch seconds)."""
    running: tuple[str, ...] = ()
    """The profiles it was running at that heartbeat."""


def good_run_of(values: dict[str, Any]) -> GoodRun:
    """A GoodRun from the decoded ``meta`` values under GOOD_KEYS."""
    saved = values.get("source_marker")
    marker = Marker(str(saved["marker"]), str(saved.get("config", "")),
                    float(saved.get("read_at", 0))) \
        if isinstance(saved, dict) and saved.get("marker") else None
    users, unusable = values.get("last_source_users"), values.get("last_source_unusable")
    mapping = values.get("group_mapping")
    return GoodRun(values.get("applied_source_digest"),
                   None if users is None else int(users),
                   None if unusable is None else int(unusable), marker,
                   mapping if isinstance(mapping, dict) and mapping else None)


def good_run_values(run: GoodRun) -> dict[str, Any]:
    """The ``meta`` values (None: delete) that store ``run``."""
    return dict(zip(GOOD_KEYS, (run.source_digest, run.users, run.unusable,
                                marker_value(run.marker), run.group_mapping or None),
                    strict=True))


def marker_value(marker: Marker | None) -> dict[str, Any] | None:
    return None if marker is None else {
        "marker": marker.value, "config": marker.config, "read_at": marker.read_at}


ENCODE = json.JSONEncoder(ensure_ascii=False).encode
"""One encoder for every row (``json.dumps`` with options builds a new one per call)."""

ManagedOp = tuple[str, tuple[Any, ...]]
"""("add", (profile, kind, ref, external_id, since)) or ("del", (profile, kind, ref))."""


def managed_updates(profile: str, outcome: Outcome) -> list[ManagedOp]:
    """The managed-set updates an applied change calls for, in order."""
    change = outcome.change
    if isinstance(change, CreateUser | LinkUser | RelinkUser):
        ref = outcome.ref or getattr(change, "ref", "")
        return [("add", (profile, "user", ref, change.user.external_id,
                         time.time()))] if ref else []
    if isinstance(change, CreateGroup | LinkGroup | RelinkGroup):
        ref = outcome.ref or getattr(change, "ref", "")
        return [("add", (profile, "group", ref, change.external_id,
                         time.time()))] if ref else []
    if isinstance(change, DeleteUser | DeleteGroup):
        kind = "user" if isinstance(change, DeleteUser) else "group"
        return [("del", (profile, kind, change.ref))]
    return []


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def default_replica() -> str:
    """This process's replica id: ``host:pid`` (a pod's host name is its name)."""
    return f"{socket.gethostname()}:{os.getpid()}"
