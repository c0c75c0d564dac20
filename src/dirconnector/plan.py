"""The typed changes a plan is made of, and the plan's JSON form.

Users and groups in a change are named the way both sides understand: the
directory's ``external_id`` and, when the account already exists, the server's
``ref``. Changes to accounts that do not exist yet (a membership of a user this
plan creates) carry an empty ``ref``; the target resolves it after the create.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .errors import ConfigError
from .model import Skipped, Snapshot, User

FORMAT_VERSION = 1

RemovalReason = Literal["disabled", "missing"]


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A user as a group member: its directory id, its server id when known, its email."""

    external_id: str
    ref: str
    email: str


@dataclass(frozen=True, slots=True)
class CreateUser:
    """Create a server account for a directory user."""

    user: User
    kind: ClassVar[str] = "create_user"
    symbol: ClassVar[str] = "+"


@dataclass(frozen=True, slots=True)
class LinkUser:
    """Adopt an existing server account found by email: give it the directory's external id."""

    ref: str
    user: User
    previous_external_id: str
    kind: ClassVar[str] = "link_user"
    symbol: ClassVar[str] = ">"


@dataclass(frozen=True, slots=True)
class RelinkUser:
    """Give an account the directory's external id in place of the key another tool stored.

    The account was recognised by that key (a takeover, ``[sync] takeover_from``), not by
    email: only its external id changes; type, permissions, collections and groups stay.
    """

    ref: str
    user: User
    previous_external_id: str
    """The key the server holds now (bwdc: the entry DN on LDAP without AD)."""
    kind: ClassVar[str] = "relink_user"
    symbol: ClassVar[str] = ">"


@dataclass(frozen=True, slots=True)
class UpdateUser:
    """Change attributes of an account that already matches."""

    ref: str
    user: User
    fields: tuple[str, ...]
    before: tuple[str, ...]
    kind: ClassVar[str] = "update_user"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True, slots=True)
class RestoreUser:
    """Re-activate a revoked account the directory holds active again."""

    ref: str
    user: User
    kind: ClassVar[str] = "restore_user"
    symbol: ClassVar[str] = "+"


@dataclass(frozen=True, slots=True)
class RevokeUser:
    """Deactivate an account (SCIM active=false, Bitwarden revoke); it can be restored."""

    ref: str
    external_id: str
    email: str
    reason: RemovalReason
    kind: ClassVar[str] = "revoke_user"
    symbol: ClassVar[str] = "-"


@dataclass(frozen=True, slots=True)
class DeleteUser:
    """Remove an account from the server."""

    ref: str
    external_id: str
    email: str
    reason: RemovalReason
    kind: ClassVar[str] = "delete_user"
    symbol: ClassVar[str] = "-"


@dataclass(frozen=True, slots=True)
class CreateGroup:
    """Create a group (members follow in AddMembers)."""

    external_id: str
    name: str
    kind: ClassVar[str] = "create_group"
    symbol: ClassVar[str] = "+"


@dataclass(frozen=True, slots=True)
class LinkGroup:
    """Adopt a server group found by name: give it the directory's external id."""

    ref: str
    external_id: str
    name: str
    previous_external_id: str
    kind: ClassVar[str] = "link_group"
    symbol: ClassVar[str] = ">"


@dataclass(frozen=True, slots=True)
class RelinkGroup:
    """Give a group the directory's external id in place of the key another tool stored."""

    ref: str
    external_id: str
    name: str
    previous_external_id: str
    kind: ClassVar[str] = "relink_group"
    symbol: ClassVar[str] = ">"


@dataclass(frozen=True, slots=True)
class RenameGroup:
    """Change a group's display name."""

    ref: str
    external_id: str
    name: str
    previous_name: str
    kind: ClassVar[str] = "rename_group"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True, slots=True)
class AddMembers:
    """Add users to a group."""

    group_ref: str
    group_external_id: str
    group_name: str
    members: tuple[MemberRef, ...]
    kind: ClassVar[str] = "add_members"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True, slots=True)
class RemoveMembers:
    """Remove users from a group."""

    group_ref: str
    group_external_id: str
    group_name: str
    members: tuple[MemberRef, ...]
    kind: ClassVar[str] = "remove_members"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True, slots=True)
class DeleteGroup:
    """Delete a group the directory no longer has."""

    ref: str
    external_id: str
    name: str
    member_count: int = 0
    """Members it has on the server: the memberships its deletion takes away (the guard)."""
    kind: ClassVar[str] = "delete_group"
    symbol: ClassVar[str] = "-"


@dataclass(frozen=True, slots=True)
class Kept:
    """A person the plan leaves exactly as the server holds them, and why. Not a change.

    Two causes: the directory entry cannot be used now (no email, an invalid or
    duplicate one, ...), so nothing about its account may change until it can; or the
    change it needs is one the target cannot make (Bitwarden members own their email).
    """

    ref: str
    """The server account's id; empty when the person has no account (not created)."""
    external_id: str
    """The directory entry's id."""
    email: str
    """The address the server holds (or the directory's, for someone without an account)."""
    reason: str
    """Why, in the operator's words ("no email", "email change not possible ...")."""
    detail: str = ""
    """Which entry, which values: enough to find and fix it."""


Change = (
    CreateUser | LinkUser | UpdateUser | RestoreUser | RevokeUser | DeleteUser
    | CreateGroup | LinkGroup | RenameGroup | AddMembers | RemoveMembers | DeleteGroup
    | RelinkUser | RelinkGroup
)

CHANGE_TYPES: dict[str, type[Any]] = {
    t.kind: t for t in (CreateUser, LinkUser, UpdateUser, RestoreUser, RevokeUser, DeleteUser,
                        CreateGroup, LinkGroup, RenameGroup, AddMembers, RemoveMembers, DeleteGroup,
                        RelinkUser, RelinkGroup)
}

# Apply order (DESIGN: users before memberships, removals last). Links and updates come
# before creates so an email freed by an update can be taken by a create; relinks come
# first of all, so every later change finds its account under the directory's id.
PHASES: tuple[tuple[str, ...], ...] = (
    ("relink_user", "relink_group", "link_user", "update_user", "restore_user", "link_group",
     "rename_group"),
    ("create_user", "create_group"),
    ("add_members", "remove_members"),
    ("revoke_user", "delete_user", "delete_group"),
)


PHASE_OF = {kind: i for i, kinds in enumerate(PHASES) for kind in kinds}


def phase_of(change: Change) -> int:
    """The apply phase (0 first) of a change."""
    return PHASE_OF[change.kind]


def subject(change: Change) -> str:
    """A short human name for what a change touches: an email or a group name."""
    if isinstance(change, CreateUser | LinkUser | UpdateUser | RestoreUser | RelinkUser):
        return change.user.email
    if isinstance(change, RevokeUser | DeleteUser):
        return change.email
    if isinstance(change, AddMembers | RemoveMembers):
        return change.group_name
    return change.name


def is_removal(change: Change) -> bool:
    """True for changes that take an account away from a person."""
    return isinstance(change, RevokeUser | DeleteUser)


def memberships_removed(change: Change) -> int:
    """Group memberships a change takes away (group membership grants access too)."""
    if isinstance(change, RemoveMembers):
        return len(change.members)
    if isinstance(change, DeleteGroup):
        return change.member_count
    return 0


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A server account or group whose key matches no directory entry: left as it is."""

    kind: Literal["user", "group"]
    ref: str
    name: str
    """The account's email, or the group's name."""
    external_id: str
    """The key it carries."""
    reason: str
    """Why it was not relinked, in the operator's words."""


@dataclass(frozen=True, slots=True)
class Takeover:
    """What a plan found when taking over from another tool (``[sync] takeover_from``).

    Not changes: the relinks are ``RelinkUser``/``RelinkGroup`` changes of the plan, the
    rest of the report (new members, what differs from what the tool left) is read off
    the plan's other changes by ``takeover.summary``.
    """

    tool: str
    """The tool whose keys the server holds ("bwdc")."""
    rule: str
    """How that tool keyed this directory's entries, in words."""
    right: int = 0
    """Accounts that already carry this connector's id and need no account change."""
    unmatched: tuple[Unmatched, ...] = ()
    """Accounts whose key matches no directory entry, or several: left as they are."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run would do, and what it was computed against."""

    changes: tuple[Change, ...]
    """Sorted by phase, then by subject."""
    _target_digest: str = dataclasses.field(compare=False)
    """Digest of the server snapshot the plan was computed from (a saved plan checks it);
    "" while only ``computed_from`` knows it (see :attr:`target_digest`)."""
    source_digest: str
    """Digest of the directory snapshot."""
    skipped: tuple[Skipped, ...] = ()
    """What the source left out, carried for the report."""
    managed_active: int = 0
    """Active server accounts in the managed scope (the guard's denominator)."""
    source_users: int = 0
    """Users the source returned (the guard's empty-read check)."""
    source_complete: bool = True
    """Whether the source read was complete."""
    notes: tuple[str, ...] = ()
    """Plain-language remarks for the operator (what a target will do with the plan)."""
    takeover: Takeover | None = None
    """Set while taking over from another tool: what its keys matched."""
    kept: tuple[Kept, ...] = ()
    """People left exactly as they are on the server, with the reason (not changes)."""
    managed_memberships: int = 0
    """Memberships of the server groups the plan manages (the membership guard's denominator)."""
    computed_from: Snapshot | None = dataclasses.field(default=None, repr=False,
                                                       compare=False)
    """The server snapshot itself, while the plan lives in the process that made it."""

    def __eq__(self, other: object) -> bool:
        """Field by field, the server digest compared by value however it is known."""
        if not isinstance(other, Plan):
            return NotImplemented
        return (self.target_digest == other.target_digest
                and all(getattr(self, f.name) == getattr(other, f.name)
                        for f in dataclasses.fields(self) if f.compare))

    @property
    def target_digest(self) -> str:
        """The server digest, worked out on first use: only saved plans and JSON output
        need it, and a sync that applies at once does not (1.4 s at 1M accounts)."""
        if not self._target_digest and self.computed_from is not None:
            return self.computed_from.digest()
        return self._target_digest

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> Counter[str]:
        """Changes per kind."""
        return Counter(c.kind for c in self.changes)

    def removals(self) -> tuple[int, int]:
        """Accounts revoked or deleted, and group memberships taken away."""
        accounts = memberships = 0
        for c in self.changes:
            if is_removal(c):
                accounts += 1
            else:
                memberships += memberships_removed(c)
        return accounts, memberships

    def tally(self) -> dict[str, int]:
        """Terraform's closing line: to add, to change, to revoke/remove."""
        add = change = remove = 0
        for c in self.changes:
            if c.symbol == "+":
                add += 1
            elif c.symbol == "-":
                remove += 1
            else:
                change += 1
        return {"add": add, "change": change, "remove": remove}

    def by_phase(self) -> Iterator[list[Change]]:
        """Changes grouped in apply order."""
        for kinds in PHASES:
            batch = [c for c in self.changes if c.kind in kinds]
            if batch:
                yield batch

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target_digest": self.target_digest,
            "source_digest": self.source_digest,
            "managed_active": self.managed_active,
            "source_users": self.source_users,
            "source_complete": self.source_complete,
            "managed_memberships": self.managed_memberships,
            "summary": dict(sorted(self.counts().items())),
            "notes": list(self.notes),
            "takeover": plain(self.takeover),
            "changes": [{"kind": c.kind, **plain(c)} for c in self.changes],
            "kept": [plain(k) for k in self.kept],
            "skipped": [plain(s) for s in self.skipped],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"plan file: format_version {data.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; make the plan again with this version")
        try:
            changes = tuple(_change_from(d) for d in data["changes"])
            skipped = tuple(Skipped(**s) for s in data.get("skipped", []))
            kept = tuple(Kept(**k) for k in data.get("kept", []))
            return cls(changes, data["target_digest"], data["source_digest"], skipped,
                       int(data.get("managed_active", 0)), int(data.get("source_users", 0)),
                       bool(data.get("source_complete", True)), tuple(data.get("notes", [])),
                       kept=kept, managed_memberships=int(data.get("managed_memberships", 0)),
                       takeover=_takeover_from(data.get("takeover")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"plan file: not a dirconnector plan ({exc})") from exc


def _takeover_from(data: dict[str, Any] | None) -> Takeover | None:
    if data is None:
        return None
    fields = dict(data)
    fields["unmatched"] = tuple(Unmatched(**u) for u in fields.get("unmatched", ()))
    return Takeover(**fields)


def _change_from(data: dict[str, Any]) -> Change:
    fields = dict(data)
    cls = CHANGE_TYPES[fields.pop("kind")]
    if "user" in fields:
        user = dict(fields["user"])
        user["attributes"] = tuple(tuple(p) for p in user.get("attributes", ()))
        fields["user"] = User(**user)
    if "members" in fields:
        fields["members"] = tuple(MemberRef(**m) for m in fields["members"])
    for name in ("fields", "before"):
        if name in fields:
            fields[name] = tuple(fields[name])
    change: Change = cls(**fields)
    return change


def sort_changes(changes: Sequence[Change]) -> tuple[Change, ...]:
    """Deterministic order: phase, kind, subject, then the ids."""
    def key(c: Change) -> tuple[int, str, str, str]:
        ext = getattr(c, "external_id", "") or getattr(c, "group_external_id", "")
        if not ext and hasattr(c, "user"):
            ext = c.user.external_id
        return (phase_of(c), c.kind, subject(c), ext)
    return tuple(sorted(changes, key=key))


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain(value: Any) -> Any:
    """``dataclasses.asdict`` for the journal and plan files, without its per-value deepcopy.

    Same JSON (field order, nested records and tuples), about five times cheaper:
    a 100k-change run journals 100k changes. Values are immutable (frozen records,
    strings, tuples), so nothing needs copying.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind not in _FIELD_NAMES:
        _FIELD_NAMES[kind] = (tuple(f.name for f in dataclasses.fields(value)
                                    if (kind is not User or f.name != "attributes")
                                    and (kind is not Skipped or f.name != "user"))
                              if dataclasses.is_dataclass(value) and not isinstance(value, type)
                              else None)
    names = _FIELD_NAMES[kind]
    if names is not None:
        out = {}
        for name in names:
            # Scalars (most fields) are taken as they are, without a call: a 100k-change
            # run goes through 2.5 million fields here, twice (journal and report).
            field = getattr(value, name)
            out[name] = field if type(field) in _SCALARS else plain(field)
        if kind is User and value.attributes:
            # Mapped attributes only when there are any: a plan without a mapping
            # serialises byte for byte as before (``_FIELD_NAMES`` leaves them out).
            out["attributes"] = [list(pair) for pair in value.attributes]
        return out
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
