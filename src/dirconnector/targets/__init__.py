"""The Target protocol: how a server is read and changed.

``snapshot`` returns what the server holds (users and groups keyed by the server's
own ids, in ``ref``). ``apply`` carries out a plan's changes and reports each
outcome through ``record`` as soon as it is known, so the journal is right even if
the process dies half-way. The order comes from ``Plan.by_phase()``, retries from
``dirconnector.http``, and ``DeferredRecord`` (below) keeps the journal true when the
runner interrupts an apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..checks import CheckReport
from ..model import Snapshot
from ..outcome import Outcome
from ..plan import Change, Plan

__all__ = ["CheckReport", "DeferredRecord", "HasLimitations", "Outcome", "Record", "Target",
           "WritesExternalId"]

Record = Callable[[Outcome], None]


class DeferredRecord:
    """Wraps ``record`` so every outcome reaches it even after it raised once.

    The runner's ``record`` raises RunInterrupted when a signal asks the run to stop.
    A target must then start nothing new, but the changes already sent (a Bulk
    response's operations, requests in flight on other threads) still happened and
    must be journalled: it keeps calling this wrapper for them, checks ``stopped``
    before starting more, and calls ``raise_pending()`` at the end.
    """

    def __init__(self, record: Record) -> None:
        self._record = record
        self.error: BaseException | None = None

    def __call__(self, outcome: Outcome) -> None:
        try:
            self._record(outcome)
        except BaseException as exc:  # kept and re-raised by raise_pending
            if self.error is None:
                self.error = exc

    @property
    def stopped(self) -> bool:
        return self.error is not None

    def raise_pending(self) -> None:
        if self.error is not None:
            raise self.error


@runtime_checkable
class Target(Protocol):
    """A server that holds accounts and groups."""

    settings_model: ClassVar[type[BaseModel]]
    """The pydantic model of this target's ``[target]`` table."""

    def __init__(self, settings: Any) -> None: ...

    def check(self) -> CheckReport:
        """Connect and verify the credentials; never raises for a failed check."""
        ...

    def snapshot(self) -> Snapshot:
        """Every account and group the server holds now."""
        ...

    def apply(self, plan: Plan, record: Record) -> None:
        """Carry out the plan; report every change's outcome through ``record``.

        A failure of one change is recorded and the rest go on; only a failure that
        makes every further change pointless (credentials revoked) raises.
        """
        ...

    def describe(self, plan: Plan) -> tuple[str, ...]:
        """Plain-language notes on how this target will carry out the plan."""
        ...


@runtime_checkable
class HasLimitations(Protocol):
    """A target that cannot make some changes a plan may hold (Bitwarden: a member's email).

    ``limitations(plan)`` names each such change and why. The runner takes them out of
    the plan before the guard and lists the people concerned in ``Plan.kept``: a change
    no server can make is a note for the operator, never a failure that repeats on
    every run (and the no-change shortcut keeps working).
    """

    def limitations(self, plan: Plan) -> Sequence[tuple[Change, str]]:
        """The changes of ``plan`` this server cannot make, each with the reason."""
        ...


@runtime_checkable
class WritesExternalId(Protocol):
    """A target that can give an existing account or group another external id, or none.

    ``ref`` is the server's own id (the ``ref`` of a record in its snapshot); an empty
    ``external_id`` removes the attribute. Nothing else about the record changes (a
    Bitwarden member keeps its role, permissions, collections and groups). A refusal
    raises TargetError. A target's own relinks (RelinkUser, RelinkGroup) take the same
    code path, and ``migrate apply`` and ``rollback`` write through nothing else.
    """

    def set_user_external_id(self, ref: str, external_id: str) -> None:
        """Set the externalId of the account ``ref`` ("" removes it)."""
        ...

    def set_group_external_id(self, ref: str, external_id: str) -> None:
        """Set the externalId of the group ``ref`` ("" removes it)."""
        ...
