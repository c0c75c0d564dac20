"""Records every connector returns and every target reads: User, Group, Snapshot.

A *source* snapshot keys users and groups by the directory's stable id
(``external_id``). A *target* snapshot keys them by the server's own id (``ref``)
and fills ``external_id`` with what the server stores, which may be empty for
accounts nobody provisioned. ``key`` gives whichever applies.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SkipReason = Literal[
    "no email", "duplicate email", "invalid email", "filtered out", "external member", "status"
]


def normalize_email(value: str | None) -> str:
    """Lower-case and trim an address; NFC so look-alike spellings compare equal."""
    if not value:
        return ""
    if value.isascii():
        return value.strip().lower()     # NFC leaves ASCII unchanged; skip the call
    return unicodedata.normalize("NFC", value).strip().lower()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause automatic garbage collection while building large acyclic structures.

    A million users are a few million container objects; CPython's generational
    collector would traverse the growing heap again and again (about a third of
    ``Snapshot.build`` + ``diff`` time at 300k users, measured). Users, groups and
    plans hold no reference cycles, so nothing is lost by collecting later;
    reference counting still frees everything as usual. Nested uses are fine.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def clean_text(value: str | None) -> str:
    """Trim a display value and drop control characters a server would reject."""
    if not value:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc").strip()


_UNSAFE_IN_EMAIL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def looks_like_email(value: str) -> bool:
    """A cheap syntax check: one @, non-empty local part and domain, no whitespace or
    control characters (a newline or ESC inside an address must never reach a server)."""
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and "@" not in local.strip('"')
                and not _UNSAFE_IN_EMAIL.search(value))


@dataclass(frozen=True, slots=True)
class User:
    """One person."""

    external_id: str
    """The source's stable id (objectGUID, entryUUID, a cloud directory's id); never the email."""
    email: str
    """Lower-cased, trimmed address; the login on most servers."""
    user_name: str = ""
    """The directory's login name (sAMAccountName, uid, UPN); empty means use the email."""
    display_name: str = ""
    """Full name as shown to people."""
    given_name: str = ""
    """First name."""
    family_name: str = ""
    """Last name."""
    active: bool = True
    """False when the directory disables, suspends or deprovisions the account."""
    ref: str = ""
    """The target's own id for this account (SCIM id, Bitwarden member id); empty in a source."""
    attributes: tuple[tuple[str, str], ...] = ()
    """Mapped attributes (``[target.mapping]``) as sorted (SCIM path, value) pairs, only
    non-empty values; a connector fills it with (source attribute, value) pairs, which
    ``mapping.UserMapping.apply`` turns into paths. The manager's entry holds the manager's
    external id. Empty (one shared tuple) for every profile without a mapping."""

    @property
    def key(self) -> str:
        """The key this record has in its snapshot: ``ref`` on a target, else ``external_id``."""
        return self.ref or self.external_id

    @property
    def login(self) -> str:
        """The userName to send to a server: the email unless a user name is set."""
        return self.email


def value_of(user: User, name: str) -> str:
    """A field of a user (``display_name``) or one of its mapped attributes (a SCIM path),
    as a string; what an ``UpdateUser``'s ``fields`` name."""
    if name in _USER_FIELD_NAMES:
        return str(getattr(user, name))
    for path, value in user.attributes:
        if path == name:
            return value
    return ""


@dataclass(frozen=True, slots=True)
class Group:
    """A group of users, possibly holding other groups."""

    external_id: str
    """The source's stable id for the group."""
    name: str
    """Display name."""
    member_ids: frozenset[str] = frozenset()
    """Direct user members, as user keys of the same snapshot."""
    subgroup_ids: frozenset[str] = frozenset()
    """Direct nested groups, as group keys of the same snapshot (sources only)."""
    ref: str = ""
    """The target's own id for the group; empty in a source."""

    @property
    def key(self) -> str:
        """The key this record has in its snapshot."""
        return self.ref or self.external_id


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry the connector read but did not hand on, and why."""

    kind: Literal["user", "group"]
    """What was skipped."""
    ref: str
    """How to find it in the source: DN, id, or email."""
    reason: SkipReason
    """Why it was skipped."""
    detail: str = ""
    """Extra words for the report (the duplicate's email, the filter that dropped it)."""
    external_id: str = ""
    """Its external id when known: a plan never removes an account only because it was skipped."""
    user: User | None = field(default=None, compare=False, repr=False)
    """A duplicate email's record, kept so that watch can sync it at once when the entry
    it collided with changes (not compared, hashed, or written to plans and journals)."""


AMBIGUOUS = "\x00ambiguous"
"""What :meth:`PreviousKeys.find` answers for a key that several directory entries share."""


@dataclass(frozen=True)
class PreviousKeys:
    """The keys another tool stored on the server for this directory's entries (a takeover).

    Bwdc keyed LDAP entries without objectGUID on their DN; this project keys them on
    entryUUID (nsUniqueId, ipaUniqueID). The connector hands over what it read anyway,
    so the plan can recognise accounts by the old key and relink them.

    Why a mapping on the snapshot and not a field on every User and Group: a field is
    one more slot on each of a million records (8 MB) for every connector on every run,
    in every ``User(...)`` built by ``Snapshot.build`` and the digest, while only a
    takeover needs it, and only for the entries whose old key differs from their id
    (none on Active Directory or the cloud directories, where bwdc's key *is* the id).
    The LDAP connector already builds DN -> id while reading (to resolve group members);
    handing that dict over costs no new strings, only keeps it alive until the plan is
    made. A spelling the dict does not hold is compared through ``canonical`` (an
    index built on the first miss only).
    """

    tool: str
    """Who stored the keys ("bwdc")."""
    rule: str
    """How that tool keyed this directory's entries, in words ("the entry DN")."""
    users: Mapping[str, str] = field(default_factory=dict)
    """Old key, spelt as the connector read it -> the user's external id; only where they
    differ (an empty mapping: the tool used this connector's ids)."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Old key -> the group's external id; only where they differ."""
    canonical: Callable[[str], str] | None = None
    """How two spellings of one key compare (LDAP: ``normalize_dn``: case, spacing,
    escapes), or None: exactly. May raise ValueError for a value that is no such key."""

    def find(self, kind: Literal["user", "group"], key: str) -> str | None:
        """The external id the entry keyed ``key`` has now; None if no entry; AMBIGUOUS."""
        table = self.users if kind == "user" else self.groups
        found = table.get(key)
        if found is not None or self.canonical is None or not table:
            return found
        try:
            norm = self.canonical(key)
        except ValueError:
            return None
        return (self._users_canonical if kind == "user" else self._groups_canonical).get(norm)

    @functools.cached_property
    def _users_canonical(self) -> dict[str, str]:
        return self._index(self.users)

    @functools.cached_property
    def _groups_canonical(self) -> dict[str, str]:
        return self._index(self.groups)

    def _index(self, table: Mapping[str, str]) -> dict[str, str]:
        assert self.canonical is not None
        out: dict[str, str] = {}
        for key, ext in table.items():
            try:
                norm = self.canonical(key)
            except ValueError:
                continue
            if out.setdefault(norm, ext) != ext:
                out[norm] = AMBIGUOUS
        return out


@dataclass(frozen=True)
class Snapshot:
    """The complete state of one side at one moment."""

    users: Mapping[str, User]
    """Users by key."""
    groups: Mapping[str, Group]
    """Groups by key."""
    skipped: tuple[Skipped, ...] = ()
    """What the reader left out, and why."""
    complete: bool = True
    """False when the read did not see everything (a failed page, a size limit)."""
    info: Mapping[str, str] = field(default_factory=dict)
    """Free-form facts for reports (server kind, read duration)."""
    previous_keys: PreviousKeys | None = None
    """A source's entries under the keys another tool stored (a takeover); else None."""

    @classmethod
    def build(
        cls,
        users: Iterable[User],
        groups: Iterable[Group] = (),
        skipped: Iterable[Skipped] = (),
        *,
        complete: bool = True,
        info: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """Normalise a source read: drop users without a valid email and active duplicates.

        When two *active* users share an email neither is synced (a server cannot hold
        both, and picking one silently is how accounts get swapped); an inactive
        duplicate of an active user is dropped in favour of the active one.
        """
        with paused_gc():
            return cls._build(users, groups, skipped, complete, info)

    @classmethod
    def _build(cls, users: Iterable[User], groups: Iterable[Group], skipped: Iterable[Skipped],
               complete: bool, info: Mapping[str, str] | None) -> Snapshot:
        skips = list(skipped)
        # The first user seen per email; later ones with the same email go to ``dups``
        # (one dict entry per user instead of one list per email: 1M lists saved).
        by_email: dict[str, User] = {}
        dups: dict[str, list[User]] = {}
        for user in users:
            raw = user.email
            email = raw.strip().lower() if raw and raw.isascii() else normalize_email(raw)
            if not email:
                skips.append(Skipped("user", user.user_name or user.external_id, "no email",
                                     external_id=user.external_id))
                continue
            if not looks_like_email(email):
                skips.append(Skipped("user", user.external_id, "invalid email", email,
                                     external_id=user.external_id))
                continue
            if _CONTROL.search(f"{user.user_name}{user.display_name}{user.given_name}"
                               f"{user.family_name}"):
                # Normalised once, here: servers strip control characters on their side,
                # and a name that differs only by them would be re-sent on every run.
                user = User(user.external_id, raw, clean_text(user.user_name),
                            clean_text(user.display_name), clean_text(user.given_name),
                            clean_text(user.family_name), user.active, user.ref,
                            user.attributes)
            if email != raw:
                user = User(user.external_id, email, user.user_name, user.display_name,
                            user.given_name, user.family_name, user.active, user.ref,
                            user.attributes)
            first = by_email.get(email)
            if first is None:
                by_email[email] = user
            else:
                dups.setdefault(email, [first]).append(user)
        kept: dict[str, User] = {}
        for email, only in by_email.items():
            same = dups.get(email)
            if same is None:
                kept[only.external_id] = only
                continue
            same.sort(key=lambda u: u.external_id)
            active = [u for u in same if u.active]
            winner = active[0] if len(active) == 1 else None if active else same[0]
            if winner is not None:
                kept[winner.external_id] = winner
            for u in same:
                if u is winner:
                    continue
                # Name every other entry: the operator fixes one of them at the source.
                others = ", ".join(_entry_name(o) for o in same if o is not u)
                skips.append(Skipped("user", _entry_name(u), "duplicate email",
                                     f"{email}, also on {others}", external_id=u.external_id,
                                     user=u))
        group_map = {g.external_id: g if not _CONTROL.search(g.name) else
                     Group(g.external_id, clean_text(g.name), g.member_ids, g.subgroup_ids, g.ref)
                     for g in groups}
        # Sorting the keys alone is cheaper than sorting (key, record) pairs.
        return cls({k: kept[k] for k in sorted(kept)},
                   {k: group_map[k] for k in sorted(group_map)}, tuple(skips), complete,
                   dict(info or {}))

    def digest(self) -> str:
        """The cached :meth:`compute_digest` (a snapshot is immutable)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        return self.compute_digest()

    def compute_digest(self) -> str:
        """A stable hash of the users and groups (not of skips or info).

        Every synced field of every record, in key order: equal snapshots hash equal
        whatever order their records came in, and any change of a field, a membership or
        a nesting changes it. The state store keeps the directory's digest between runs;
        a digest from an older version that differs only means one full reconcile.
        """
        h = hashlib.sha256(b"dirconnector snapshot 2\n")
        _hash_records(h.update, self.users, _USER_TEXTS, (), (_active_of,))
        _hash_records(h.update, self.groups, _GROUP_TEXTS, _GROUP_SETS, ())
        if any(map(_attributes_of, self.users.values())):
            # Only with a mapping: a profile without one hashes exactly as before.
            h.update(b"attributes\x1e")
            for key in sorted(self.users):
                attrs = self.users[key].attributes
                if attrs:
                    h.update("\x1f".join([key, *("\x1d".join(p) for p in attrs)]).encode())
                    h.update(b"\x1e")
        return h.hexdigest()

    @property
    def skipped_ids(self) -> frozenset[str]:
        """External ids of users the reader saw but left out."""
        return frozenset(s.external_id for s in self.skipped if s.external_id)


_USER_FIELD_NAMES = frozenset(User.__slots__)
_USER_TEXTS = tuple(map(operator.attrgetter, (
    "external_id", "email", "user_name", "display_name", "given_name", "family_name", "ref")))
_GROUP_TEXTS = tuple(map(operator.attrgetter, ("external_id", "name", "ref")))
_GROUP_SETS = tuple(map(operator.attrgetter, ("member_ids", "subgroup_ids")))
_active_of = operator.attrgetter("active")
_attributes_of = operator.attrgetter("attributes")
_DIGEST_CHUNK = 4096


def _hash_records(update: Callable[[bytes], object], records: Mapping[str, Any],
                  texts: tuple[Callable[[Any], str], ...],
                  sets: tuple[Callable[[Any], frozenset[str]], ...],
                  flags: tuple[Callable[[Any], bool], ...]) -> None:
    """Feed ``records`` to a hash's ``update`` in key order, column by column, a chunk at a time.

    A million users make a hundred megabytes of text, and the cost is touching it, not
    interpreting: so each column of a chunk of records is joined in C (the chunk stays
    in the CPU cache across its columns) instead of formatting one string per record
    (0.8 s -> 0.5 s per million users, measured). Within a column values are separated by
    ASCII unit separators, and set members by group separators: neither occurs in
    normalised values (clean_text drops control characters). Flags are one byte each.
    """
    keys = list(records)
    ordered = sorted(keys)
    # A source snapshot is already in key order (Snapshot.build): take its values as they
    # are rather than looking every key up again.
    values = (list(records.values()) if ordered == keys
              else list(map(records.__getitem__, ordered)))
    update(b"%d\x1e" % len(ordered))
    for start in range(0, len(ordered), _DIGEST_CHUNK):
        part = values[start:start + _DIGEST_CHUNK]
        columns: list[Iterable[str]] = [ordered[start:start + _DIGEST_CHUNK]]
        columns.extend(map(get, part) for get in texts)
        columns.extend(map("\x1d".join, map(sorted, map(get, part))) for get in sets)
        for column in columns:
            update("\x1f".join(column).encode())
            update(b"\x1e")
        for get in flags:
            update(bytes(map(get, part)))


def _entry_name(user: User) -> str:
    """How an operator finds a user in the directory: login name and id."""
    return f"{user.user_name} ({user.external_id})" if user.user_name else user.external_id


def _replace_user(user: User, **changes: object) -> User:
    from dataclasses import replace

    return replace(user, **changes)  # type: ignore[arg-type]  # dataclass kwargs checked at runtime


def flatten(groups: Mapping[str, Group], members: Mapping[str, frozenset[str]] | None = None
            ) -> dict[str, frozenset[str]]:
    """Transitive user members of every group, following nested groups.

    Linear in groups + edges: strongly connected components (Tarjan, iterative) make
    every group of a cycle share one member set; diamonds are computed once;
    subgroup ids that name no group are ignored. ``members``, when given, holds each
    group's direct members in place of its ``member_ids`` (diff passes them already
    translated into server keys, so a nested user is translated once, not once per
    enclosing group).
    """
    direct = members if members is not None else {
        gid: group.member_ids for gid, group in groups.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comp_of: dict[str, int] = {}
    comps: list[list[str]] = []
    counter = 0
    kids = {gid: _children(groups, gid) for gid in groups}
    for root in groups:
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(kids[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(kids[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp_of[member] = len(comps)
                    comp.append(member)
                    if member == node:
                        break
                comps.append(comp)
    # Tarjan emits components in reverse topological order: children before parents.
    comp_members: list[frozenset[str]] = []
    for comp in comps:
        if len(comp) == 1 and not kids[comp[0]]:
            own = direct[comp[0]]    # a leaf: its own frozenset, no copy
            comp_members.append(own if type(own) is frozenset else frozenset(own))
            continue
        union: set[str] = set()
        seen_children: set[int] = set()
        for gid in comp:
            union.update(direct[gid])
            for child in kids[gid]:
                c = comp_of[child]
                if c != comp_of[gid] and c not in seen_children:
                    seen_children.add(c)
                    union.update(comp_members[c])
        comp_members.append(frozenset(union))
    return {gid: comp_members[comp_of[gid]] for gid in groups}


def _children(groups: Mapping[str, Group], gid: str) -> list[str]:
    return [c for c in groups[gid].subgroup_ids if c in groups]
