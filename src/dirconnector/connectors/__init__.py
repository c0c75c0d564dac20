"""The Connector protocol: how a directory is read.

A connector is built from its own validated settings model and reads nothing
global. ``fetch`` always returns the complete desired state; incremental reads are
its private optimisation, kept in ``state``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..checks import CheckReport
from ..model import Snapshot
from ..state_space import ConnectorState

__all__ = ["CheckReport", "Connector", "ConnectorState", "ReadsPreviousKeys"]


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

    # Optional: ``change_marker(self) -> str | None``, a cheap value that changes with
    # every write to the directory (LDAP: contextCSN, highestCommittedUSN). When it
    # equals the one taken before the last good run, the runner skips the read, for at
    # most the source's ``full_read_interval`` after the last full read (sync.py).


@runtime_checkable
class ReadsPreviousKeys(Protocol):
    """Can also hand over the keys another tool stored for its entries (a takeover).

    Only connectors whose ids differ from that tool's need it (LDAP without objectGUID:
    bwdc keyed entries on their DN); for the others the runner knows the keys are the ids.
    """

    def read_previous_keys(self, tool: str) -> None:
        """From now on, ``fetch`` fills ``Snapshot.previous_keys`` with ``tool``'s keys."""
        ...
