"""The Connector protocol, how a directory is read, and its optional capabilities.

A connector is built from its own validated settings model and reads nothing
global. ``fetch`` always returns the complete desired state; incremental reads are
its private optimisation, kept in ``state``.

Optional capabilities are small protocols of their own; the runner asks
``isinstance(connector, HasChangeMarker)``, never ``getattr``, and
``dirconnector.testing.check_connector`` tests each one a connector claims:

- ``HasChangeMarker``: a cheap value that changes with every write to the directory,
  so an unchanged directory is not read at all;
- ``ReadsPreviousKeys``: hands over the keys another tool stored (a takeover).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..checks import CheckReport
from ..model import Snapshot
from ..state_space import ConnectorState

__all__ = ["CheckReport", "Connector", "ConnectorState", "HasChangeMarker", "ReadsPreviousKeys"]


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
class ReadsPreviousKeys(Protocol):
    """Can also hand over the keys another tool stored for its entries (a takeover).

    Only connectors whose ids differ from that tool's need it (LDAP without objectGUID:
    bwdc keyed entries on their DN); for the others the runner knows the keys are the ids.
    """

    def read_previous_keys(self, tool: str) -> None:
        """From now on, ``fetch`` fills ``Snapshot.previous_keys`` with ``tool``'s keys."""
        ...
