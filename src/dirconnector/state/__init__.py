"""The state store: one interface, two implementations.

    StateStore (Protocol)   what the runner, daemon, CLI and migrate may call
    ├── SqliteStore         one file, ``flock`` per profile (sqlite.py; the default)
    └── PostgresStore       several hosts, a session advisory lock per profile (postgres.py)
    SharesProfiles          the capability daemon replicas coordinate through (PostgreSQL)

Both keep the same data: runs, the per-change journal, managed ids, connector state
(cursors, caches, change markers) and the no-change hash. Journal rows are written in
groups, one transaction each: a group is written when it holds ``GROUP_ROWS`` rows,
when a row arrives ``GROUP_SECONDS`` or more after the group's first one, and before
anything else reads or writes the profile's state (the end of the run included). A
process killed half-way loses the open group at most: the journal may then miss
changes the server holds, which the next run's read of the server repairs, but it never
holds a row that did not happen.

``open_store(settings)`` picks the implementation from ``[state]``: ``url`` set means
PostgreSQL, else the SQLite file at ``path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..outcome import Outcome
from ..plan import Kept
from ..state_space import ConnectorState
from .records import GROUP_ROWS, GROUP_SECONDS, GoodRun, Holder, Marker, Replica, RunRow
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..settings import StateSettings

__all__ = ["GROUP_ROWS", "GROUP_SECONDS", "GoodRun", "Holder", "Marker", "Replica", "RunRow",
           "SharesProfiles", "SqliteStore", "StateStore", "open_store"]

OnLost = Callable[[], None]
"""Called (from another thread) when a held lock is lost: the run must stop writing."""


class StateStore(Protocol):
    """Runs, the journal, managed ids, connector state, and the per-profile lock."""

    shared: bool
    """True when several hosts may share it (daemon replicas): PostgreSQL."""

    def describe(self) -> str:
        """Where the state is, for messages (no secret)."""
        ...

    def close(self) -> None: ...

    def flush(self) -> None:
        """Write and commit every open group of journal rows now."""
        ...

    def lock(self, profile: str, timeout: float = 0.0,
             on_lost: OnLost | None = None) -> AbstractContextManager[None]:
        """Hold the profile's lock for the block; LockHeld if another run has it. A lock
        that dies with its holder (never a stale lock). ``on_lost`` is called if the lock
        is lost while held (its database session died); writes then raise LockLost."""
        ...

    def start_run(self, profile: str, command: str) -> str: ...

    def finish_run(self, run_id: str, status: str, counts: dict[str, int] | None = None,
                   error: str = "") -> None: ...

    def runs(self, profile: str | None = None, limit: int = 20) -> list[RunRow]: ...

    def journal(self, run_id: str) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> RunRow | None:
        """One run by its id (a report's header), or None."""
        ...

    def journal_entries(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The journal of a run with each change as recorded (a report's per-attribute
        before and after): seq, at, kind, subject, ref, status, error, change (a dict)."""
        ...

    def record(self, run_id: str, profile: str, outcome: Outcome) -> None:
        """Journal one outcome and keep the managed set in step, in the same group."""
        ...

    def record_kept(self, run_id: str, kept: Iterable[Kept]) -> None: ...

    def managed(self, profile: str) -> frozenset[str]:
        """Server ids of accounts and groups this tool created or linked."""
        ...

    def add_managed(self, profile: str, kind: str, ref: str, external_id: str) -> None: ...

    def good_run(self, profile: str) -> GoodRun: ...

    def save_good_run(self, profile: str, run: GoodRun) -> None: ...

    def keep_marker(self, profile: str, marker: Marker | None) -> None: ...

    def frozen(self, profile: str) -> dict[str, Any] | None:
        """When and how the profile was handed to the IdP's SCIM (``migrate apply``)."""
        ...

    def freeze(self, profile: str, how: dict[str, Any] | None) -> None:
        """Mark the profile handed to the IdP (None: undo it); a frozen profile refuses sync."""
        ...

    def get_meta(self, profile: str, key: str, default: Any = None) -> Any: ...

    def set_meta(self, profile: str, key: str, value: Any) -> None: ...

    def connector_state(self, profile: str, force_full: bool = False) -> ConnectorState: ...

    def clear_cache(self, profile: str) -> None: ...


@runtime_checkable
class SharesProfiles(Protocol):
    """A store several daemon replicas share: each profile runs once per tick."""

    replica: str
    """This process's replica id (written on its runs and locks)."""

    def claim_tick(self, profile: str, tick: str) -> bool:
        """True for the first caller holding the profile's lock that claims ``tick``
        (``number/period``: one scheduled run, labelled alike on every replica); False
        once it or a later tick of the same period is taken."""
        ...

    def heartbeat(self, running: Iterable[str]) -> None:
        """Say this replica is alive and which profiles it runs now."""
        ...

    def replicas(self) -> list[Replica]: ...

    def holders(self) -> dict[str, Holder]:
        """Each profile's current (or last) lock holder."""
        ...


def open_store(settings: StateSettings, *, replica: str | None = None) -> StateStore:
    """The store ``[state]`` describes: PostgreSQL when ``url`` is set, else SQLite."""
    if settings.url is not None:
        from .postgres import PostgresStore

        return PostgresStore(settings, replica=replica)
    return SqliteStore(settings.path)


def migrate(settings: StateSettings) -> tuple[int, int]:
    """Create or upgrade the schema (``dirconnector state migrate``): (before, after)."""
    if settings.url is not None:
        from .pg_schema import migrate as pg_migrate

        return pg_migrate(settings)
    SqliteStore(settings.path).close()  # SQLite creates its tables when it opens
    return (1, 1)


