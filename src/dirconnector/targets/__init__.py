"""The Target protocol, how a server is read and changed, and its optional capabilities.

``snapshot`` returns what the server holds (users and groups keyed by the server's
own ids, in ``ref``). ``apply`` carries out a plan's changes and reports each
outcome through ``record`` as soon as it is known, so the journal is right even if
the process dies half-way. The order comes from ``Plan.by_phase()``, retries from
``dirconnector.http``. ``record`` never raises; a run that must end early (SIGTERM)
sets ``stop``, and the target starts no new change once it is set, while the outcomes
of changes already sent still reach ``record``.

Optional capabilities are small protocols of their own; the runner asks
``isinstance(target, StoresUserFields)``, never ``getattr``, and
``dirconnector.testing.check_target`` tests each one a target claims:

- ``StoresUserFields``: which user attributes the server holds for a directory to
  compare (the others are never planned as updates);
- ``HasLimitations``: changes this server cannot make, turned into plan notes;
- ``ReadsSome``: reads only the accounts and groups a change batch touches (watch mode),
  so a hand edit on the server is seen before it is written over;
- ``WritesExternalId``: sets or clears an account's or group's externalId by the server's
  id (relinks, ``migrate``), tested by ``dirconnector.testing.check_writes_external_id``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from ..checks import CheckReport
from ..model import Group, Snapshot, User
from ..outcome import Outcome
from ..plan import Change, Plan

__all__ = ["CheckReport", "HasLimitations", "Outcome", "ReadsSome", "Record", "StoresUserFields",
           "Target", "WritesExternalId"]

Record = Callable[[Outcome], None]
"""Receives each change's outcome as soon as it is known; never raises."""


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

    def apply(self, plan: Plan, record: Record, stop: threading.Event | None = None) -> None:
        """Carry out the plan; report every change's outcome through ``record``.

        A failure of one change is recorded and the rest go on; only a failure that
        makes every further change pointless (credentials revoked) raises. Once ``stop``
        is set no new change starts; the ones in flight finish and are recorded.
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
class StoresUserFields(Protocol):
    """Names the user attributes this server holds for a directory to compare and change
    (``diff.USER_FIELDS`` by default). Bitwarden holds only the email: a person's name
    belongs to their own account, so names are never planned as updates there."""

    @property
    def user_fields(self) -> tuple[str, ...]:
        """A subset of ``diff.USER_FIELDS``."""
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


@runtime_checkable
class ReadsSome(Protocol):
    """Reads some records instead of the whole server (watch mode: only what a batch
    touches). Records are as in ``snapshot`` (keyed by ``ref``, groups with members)."""

    def read_users(self, external_ids: Sequence[str], emails: Sequence[str] = ()
                   ) -> list[User]:
        """The accounts with any of ``external_ids``, or whose login is one of ``emails``."""
        ...

    def read_groups(self, external_ids: Sequence[str], names: Sequence[str] = ()
                    ) -> list[Group]:
        """The groups with any of ``external_ids`` or named one of ``names``."""
        ...
