"""The Connector protocol, how a directory is read, and its optional capabilities.

A connector is built from its own validated settings model and reads nothing
global. ``fetch`` always returns the complete desired state; incremental reads are
its private optimisation, kept in ``state``.

Optional capabilities are small protocols of their own; the runner asks
``isinstance(connector, HasChangeMarker)``, never ``getattr``, and
``dirconnector.testing.check_connector`` tests each one a connector claims:

- ``HasChangeMarker``: a cheap value that changes with every write to the directory,
  so an unchanged directory is not read at all;
- ``ReadsAttributes``: reads the extra attributes an attribute mapping names;
- ``ReadsPreviousKeys``: hands over the keys another tool stored (a takeover);
- ``HasChangeStream``: tells what changed since a position (syncrepl, DirSync, Graph
  delta, vendor feeds), so ``watch`` carries each change without a full read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..checks import CheckReport
from ..errors import SourceError
from ..model import Group, Skipped, Snapshot, User
from ..state_space import ConnectorState

__all__ = [
    "Changes",
    "CheckReport",
    "Connector",
    "ConnectorState",
    "HasChangeMarker",
    "HasChangeStream",
    "ReadsAttributes",
    "ReadsPreviousKeys",
    "StreamGap",
    "StreamMode",
]


@runtime_checkable
class Connector(Protocol):
    """Reads users and groups from one directory."""

    settings_model: ClassVar[type[BaseModel]]
    """The pydantic model of this connector's ``[source]`` table."""

    def __init__(self, settings: Any) -> None: ...

    def check(self) -> CheckReport:
        """Connect and verify permissions; counts and problems, never raises for a failed check."""
        ...

    def fetch(self, state: ConnectorState) -> Snapshot:
        """The complete desired state. Raise SourceError (or IncompleteRead) when it cannot."""
        ...


@runtime_checkable
class HasChangeMarker(Protocol):
    """Knows cheaply whether the directory was written to (LDAP: contextCSN, AD:
    highestCommittedUSN). When the marker equals the one taken before the last good run,
    the runner skips the read, for at most ``full_read_interval`` after that read."""

    @property
    def full_read_interval(self) -> timedelta:
        """How long an unchanged marker is trusted; zero turns the shortcut off."""
        ...

    def change_marker(self) -> str | None:
        """The marker now, or None when the server offers none. May raise SourceError;
        the runner then reads in full (the marker is only a shortcut)."""
        ...


@runtime_checkable
class ReadsAttributes(Protocol):
    """Can read source attributes a ``[target.mapping]`` names, besides its own fields.

    Names are the source's own (LDAP attribute names, Graph properties, Okta profile
    properties, file columns); ``manager`` is reserved: the manager's external id,
    resolved by the connector from whatever the source holds (a DN, an id).
    """

    def read_attributes(self, names: frozenset[str]) -> None:
        """From now on, ``fetch`` puts each user's non-empty values of ``names`` in
        ``User.attributes`` as (name, value) pairs (the first value of a multi-valued
        attribute). A name the source cannot read is a ConfigError, raised here when
        the settings tell, else by ``check`` and at the start of ``fetch`` (before any
        user is read) where the source's schema tells."""
        ...


@runtime_checkable
class ReadsPreviousKeys(Protocol):
    """Can also hand over the keys another tool stored for its entries (a takeover).

    Only connectors whose ids differ from that tool's need it (LDAP without objectGUID:
    bwdc keyed entries on their DN); for the others the runner knows the keys are the ids.
    """

    def read_previous_keys(self, tool: str) -> None:
        """From now on, ``fetch`` fills ``Snapshot.previous_keys`` with ``tool``'s keys."""
        ...


class StreamGap(SourceError):
    """The stream cannot go on from the position it was given (a cookie the server no
    longer knows, a directory restored from backup, a position older than the vendor's
    retention, a clock that went backwards). The engine reads in full, then streams
    again from a fresh position."""


@dataclass(frozen=True, slots=True)
class StreamMode:
    """How a connector will follow changes, and why (``check`` prints both)."""

    mode: str
    """``syncrepl``, ``dirsync``, ``usn``, ``delta``, ``feed``, or ``marker`` (no stream:
    the engine polls the change marker and reads in full when it moves)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Changes:
    """One batch from a change stream: the complete new state of every object that changed.

    Records are what ``fetch`` would have returned for them (same ids, same mapping,
    a group's ``member_ids`` and ``subgroup_ids`` whole), so the engine can merge a
    batch into the last full snapshot and get what a full read would have given.
    """

    position: str
    """Where the stream stands after this batch; saved once the batch is applied."""
    users: Mapping[str, User] = field(default_factory=dict)
    """Users added or changed, by external id."""
    groups: Mapping[str, Group] = field(default_factory=dict)
    """Groups added or changed (membership edits included), by external id."""
    removed_users: frozenset[str] = frozenset()
    """Users deleted or moved out of the synced scope."""
    removed_groups: frozenset[str] = frozenset()
    """Groups deleted or moved out of the synced scope."""
    skipped: tuple[Skipped, ...] = ()
    """Entries that changed into a state that cannot be synced (no email, ...): they
    keep exactly what they have on the server, as in a full read."""
    seen_at: Mapping[str, float] = field(default_factory=dict)
    """When the source says an object changed (epoch seconds), where it says so: the
    change-lag metric starts there instead of at the read."""

    @property
    def empty(self) -> bool:
        return not (
            self.users or self.groups or self.removed_users or self.removed_groups or self.skipped
        )


@runtime_checkable
class HasChangeStream(Protocol):
    """Follows the directory's changes from a position.

    The engine takes ``stream_position()`` before a full read, so nothing written
    during the read is lost; then it calls ``changes`` in a loop and applies each batch.
    A change may be delivered twice (after a reconnect): applying a record twice is a
    no-op by construction, since records are whole states, not edits.
    """

    def stream_mode(self) -> StreamMode:
        """The mode ``changes`` will use against this server (asks the server where it
        must: a refused control or a missing right gives ``marker`` and says why)."""
        ...

    def stream_position(self) -> str:
        """The position now. Changes after it are delivered by ``changes``."""
        ...

    def changes(self, position: str, wait: float) -> Changes:
        """Changes since ``position``, waiting up to ``wait`` seconds for the first one;
        an empty batch (with a position that may have moved) when there were none.
        Raises StreamGap when the position is no longer valid, SourceError when the
        server cannot be reached (the engine reconnects with back-off)."""
        ...

    def close(self) -> None:
        """Drop connections the stream holds open."""
        ...
