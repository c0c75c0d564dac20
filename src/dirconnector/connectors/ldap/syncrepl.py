"""OpenLDAP's change stream: the LDAP Content Synchronization Operation (RFC 4533).

One refreshAndPersist search (python-ldap) over the base DN, asking for no attributes:
the server pushes the DN and entryUUID of each entry added, modified, renamed or
deleted (RFC 4533 3.2 and 3.4), and a cookie. The entries that changed are then read
again with the connector's own searches and mapping (map.py: the user search, the
disabled search, the group search), so a change arrives exactly as ``fetch`` would
read it; group members resolve through an index of every user's and group's DN kept
since the last full read.

The cookie is the position. Reconnecting with it sends only what changed since
(RFC 4533 3.3.1); a cookie the server no longer accepts (a database restored from
backup, another server) raises StreamGap and the engine reads in full. A server
without the syncprov overlay refuses the control: ``mode`` says "marker".
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import SourceError
from ...model import Skipped, User
from .. import Changes, StreamGap, StreamMode
from .map import GroupResolver, RawGroup, Resolved, UserMapper
from .syntax import DNError, normalize_dn, strip_uid_suffix
from .wire import PyLdapWire, backend_name, lowered

if TYPE_CHECKING:
    from .connector import LdapConnector

log = logging.getLogger(__name__)

SYNC_OID = "1.3.6.1.4.1.4203.1.9.1.1"
REFRESH_REQUIRED = 4096
"""RFC 4533 2.3: e-syncRefreshRequired, the cookie cannot be resumed."""
CHUNK = 100
"""entryUUIDs OR'ed in one search filter."""


@dataclass
class _Pending:
    """What the server pushed since the last batch."""

    changed: dict[str, str] = field(default_factory=dict)  # uuid -> dn
    deleted: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    present_done: bool = False
    cookie: str = ""


@dataclass
class _Index:
    """Every synced entry of the last full read and the changes since, by entryUUID."""

    kind: dict[str, str] = field(default_factory=dict)  # uuid -> "user" | "group"
    ext: dict[str, str] = field(default_factory=dict)  # uuid -> external id
    users: UserMapper | None = None  # by_dn / by_uid of all users
    groups: dict[str, RawGroup] = field(default_factory=dict)  # uuid -> raw group
    listed: dict[str, frozenset[str]] = field(default_factory=dict)
    """uuid -> a group's member values, normalised (DNs) or case-folded (uids); lazy."""

    def members_of(self, u: str) -> frozenset[str]:
        got = self.listed.get(u)
        if got is None:
            got = self.listed[u] = _listed(self.groups[u])
        return got


class SyncreplStream:
    """The RFC 4533 stream of one LdapConnector (see module docstring)."""

    def __init__(self, connector: LdapConnector) -> None:
        self.connector = connector
        self.settings = connector.settings
        self._wire: PyLdapWire | None = None
        self._msgid: int | None = None
        self._cookie = ""
        self._index: _Index | None = None
        self._r: Resolved | None = None
        self._refreshing = False
        """True until the server ends the refresh phase of the open search."""

    # ------------------------------------------------------------ HasChangeStream

    def mode(self) -> StreamMode:
        if backend_name(self.settings.backend) != "python-ldap":
            return StreamMode("marker", 'the sync operation needs backend = "python-ldap"')
        try:
            wire = self._connect()
            try:
                r = self.connector._resolve(wire)
                if r.ad:
                    return StreamMode("marker", "Active Directory has no RFC 4533 sync")
                controls = _supported_controls(wire)
                if SYNC_OID not in controls:
                    return StreamMode(
                        "marker",
                        "the server does not offer the sync control "
                        "(RFC 4533; OpenLDAP: the syncprov overlay)",
                    )
            finally:
                wire.close()
        except SourceError as exc:
            return StreamMode("marker", f"the server could not be asked: {exc}")
        return StreamMode("syncrepl", "RFC 4533 refreshAndPersist (syncprov)")

    def position(self) -> str:
        """A cookie for now, made from the database's contextCSN (what syncprov's own
        cookies carry), so the stream starts without sending the whole directory; the
        persistent search opens on it, and the index of DNs is read after it (an entry
        written in between arrives again, which is harmless)."""
        self.close()
        wire = self._connect()
        try:
            csns = self._context_csns(wire)
        finally:
            wire.close()
        self._open(f"rid=000,csn={';'.join(csns)}" if csns else "")
        self._build_index()
        return self._cookie

    def _context_csns(self, wire: PyLdapWire) -> list[str]:
        from .connector import _context_of
        from .map import ROOT_DSE_ATTRS, server_info

        dse: dict[str, list[bytes]] = {}
        for page in wire.search("", "base", "(objectClass=*)", list(ROOT_DSE_ATTRS), page_size=0):
            for _, attrs in page:
                dse = lowered(attrs)
        r = self.connector._resolved(dse)
        nc = _context_of(r.base_dn, server_info(dse).naming_contexts) or r.base_dn
        csns: list[str] = []
        for page in wire.search(nc, "base", "(objectClass=*)", ["contextCSN"], page_size=0):
            for _, attrs in page:
                csns += sorted(v.decode() for v in lowered(attrs).get("contextcsn", ()))
        return csns

    def changes(self, position: str, wait: float) -> Changes:
        if self._msgid is None or position != self._cookie:
            self.close()
            pending = self._open(position)
        else:
            pending = _Pending(cookie=self._cookie)
            self._poll(pending, wait)
        if self._index is None:
            self._build_index()
        return self._resolve_changes(pending)

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        self._wire = None
        self._msgid = None

    # ------------------------------------------------------------ the wire

    def _connect(self) -> PyLdapWire:
        failures: list[str] = []
        for url in self.settings.url:
            try:
                return PyLdapWire(url, self.settings)
            except SourceError as exc:
                failures.append(str(exc))
        raise SourceError("ldap source: " + "; ".join(failures))

    def _open(self, cookie: str) -> _Pending:
        """Start refreshAndPersist from ``cookie`` and read its refresh phase."""
        import ldap
        from ldap.syncrepl import SyncRequestControl

        wire = self._connect()
        self._wire = wire
        r = self._r = self.connector._resolve(wire)
        ctrl = SyncRequestControl(
            cookie=cookie.encode() if cookie else None, mode="refreshAndPersist"
        )
        try:
            self._msgid = int(
                wire._conn.search_ext(
                    r.base_dn,
                    ldap.SCOPE_SUBTREE,
                    f"(|{r.user_search}{r.group_search})",
                    ["1.1"],
                    serverctrls=[ctrl],
                )
            )
        except ldap.LDAPError as exc:
            self.close()
            raise SourceError(f"ldap source: the sync search was refused: {exc}") from exc
        pending = _Pending(cookie=cookie)
        self._refreshing = True
        deadline = time.monotonic() + max(self.settings.timeout, 30.0)
        while self._refreshing:
            if time.monotonic() > deadline:
                self.close()
                raise SourceError("ldap source: the sync refresh did not end in time")
            self._poll(pending, 5.0)
        if cookie and pending.present_done and not pending.present and self._index:
            # No present UUIDs at all: nothing to tell deletions by (module docstring).
            pending.present_done = False
        self._cookie = pending.cookie or cookie
        return pending

    def _poll(self, pending: _Pending, wait: float) -> None:
        """Read what the server pushed: wait up to ``wait`` for the first message, then
        take what is already there (during the refresh phase: until it ends)."""
        import ldap
        from ldap.controls import DecodeControlTuples
        from ldap.syncrepl import SyncInfoMessage, SyncStateControl

        assert self._wire is not None and self._msgid is not None
        conn = self._wire._conn
        timeout = wait
        while True:
            try:
                # The raw call: LDAPObject.result4 fails on an intermediate response that
                # carries no controls (python-ldap 3.4: it iterates None).
                rtype, raw, _, _ = conn._ldap_call(
                    conn._l.result4, self._msgid, 0, timeout, 1, 1, 0
                )
                msgs = [(a, b, DecodeControlTuples(c or [])) for a, b, c in raw or ()]
            except ldap.TIMEOUT:
                return
            except ldap.LDAPError as exc:
                self.close()
                info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
                if info.get("result") == REFRESH_REQUIRED or isinstance(
                    exc, ldap.PROTOCOL_ERROR | ldap.UNWILLING_TO_PERFORM
                ):
                    raise StreamGap(
                        f"ldap source: the server cannot resume the sync from "
                        f"this cookie ({info.get('desc', exc)})"
                    ) from exc
                raise SourceError(f"ldap source: the sync stream broke: {exc}") from exc
            if rtype is None:  # a zero timeout found nothing waiting
                return
            if rtype == ldap.RES_SEARCH_RESULT:
                self.close()  # the server ended the persist phase
                self._refreshing = False
                raise SourceError("ldap source: the server ended the sync search")
            if rtype == ldap.RES_SEARCH_ENTRY:
                for dn, _attrs, ectrls in msgs:
                    for c in ectrls:
                        if not isinstance(c, SyncStateControl):
                            continue
                        if c.state == "present":
                            pending.present.add(c.entryUUID)
                        elif c.state == "delete":
                            pending.deleted.add(c.entryUUID)
                            pending.changed.pop(c.entryUUID, None)
                        else:
                            pending.changed[c.entryUUID] = dn
                            pending.deleted.discard(c.entryUUID)
                            if self._refreshing:
                                pending.present.add(c.entryUUID)
                        if c.cookie:
                            pending.cookie = _text(c.cookie)
            elif rtype == ldap.RES_INTERMEDIATE:
                for name, value, _ in msgs:
                    if name != SyncInfoMessage.responseName:
                        continue
                    self._info(SyncInfoMessage(value), pending)
            timeout = 5.0 if self._refreshing else 0

    def _info(self, sim: Any, pending: _Pending) -> None:
        """RFC 4533 2.5: a Sync Info message (new cookie, end of a phase, an id set)."""
        if sim.newcookie is not None:
            pending.cookie = _text(sim.newcookie)
        for phase, deletes in ((sim.refreshPresent, False), (sim.refreshDelete, True)):
            if phase is None:
                continue
            if not deletes:
                pending.present_done = True
            if phase.get("cookie"):
                pending.cookie = _text(phase["cookie"])
            if phase.get("refreshDone"):
                self._refreshing = False
        if sim.syncIdSet is not None:
            ids = sim.syncIdSet["syncUUIDs"]
            if sim.syncIdSet["refreshDeletes"]:
                pending.deleted.update(ids)
            else:
                pending.present.update(ids)
            if sim.syncIdSet.get("cookie"):
                pending.cookie = _text(sim.syncIdSet["cookie"])

    # ------------------------------------------------------------ entries -> records

    def _build_index(self) -> None:
        """Every user's id and DN, every group's raw members (for member resolution)."""
        assert self._wire is not None and self._r is not None
        r, s, wire = self._r, self.settings, self._wire
        users = UserMapper(r)
        index = _Index(users=users)
        for entries in wire.search(
            r.user_base,
            s.user_scope,
            r.user_search,
            [*r.user_attrs, "entryUUID"],
            page_size=s.page_size,
        ):
            users.add(entries)
            for dn, a in entries:
                u = _uuid_of(a)
                if u:
                    index.kind[u], index.ext[u] = "user", users.by_dn[dn]
        users.users.clear()  # only the DN and uid indexes are kept
        users.skipped.clear()
        for raw, u in self._groups(f"{r.group_search}"):
            index.kind[u], index.ext[u] = "group", raw.external_id
            index.groups[u] = raw
        self._index = index

    def _groups(self, filterstr: str) -> Iterable[tuple[RawGroup, str]]:
        assert self._wire is not None and self._r is not None
        r, s = self._r, self.settings
        mapper = UserMapper(r)
        for entries in self._wire.search(
            r.group_base,
            s.group_scope,
            filterstr,
            [*r.group_attrs, "entryUUID"],
            page_size=s.page_size,
        ):
            for dn, raw in entries:
                a = lowered(raw)
                name = _first(a.get(r.group_name)) or _first(a.get("cn")) or dn
                members = [(attr, v) for attr in r.member_attrs for v in a.get(attr, ())]
                yield RawGroup(dn, mapper.external_id(dn, a), name, members), _uuid_of(raw)

    def _resolve_changes(self, pending: _Pending) -> Changes:
        index, r, s = self._index, self._r, self.settings
        assert index is not None and r is not None and index.users is not None
        now = time.time()
        deleted = set(pending.deleted)
        if pending.present_done and pending.present:
            deleted |= set(index.kind) - pending.present - set(pending.changed)
        changed = list(pending.changed)
        users: dict[str, User] = {}
        skipped: list[Skipped] = []
        removed_users: set[str] = set()
        removed_groups: set[str] = set()
        groups_raw: dict[str, RawGroup] = {}
        found_users: set[str] = set()
        mapper = index.users
        touched_dns: set[str] = set()  # DNs (old and new) of entries that changed
        touched_uids: set[str] = set()
        for chunk in _chunks(changed):
            uuids = "".join(f"(entryUUID={u})" for u in chunk)
            disabled: frozenset[str] = frozenset()
            if r.disabled_search:
                disabled = frozenset(
                    dn
                    for entries in self._search(
                        r.user_base, s.user_scope, f"(&{r.disabled_search}(|{uuids}))", ["1.1"]
                    )
                    for dn, _ in entries
                )
            batch = UserMapper(r, disabled)
            for entries in self._search(
                r.user_base,
                s.user_scope,
                f"(&{r.user_search}(|{uuids}))",
                [*r.user_attrs, "entryUUID"],
            ):
                batch.add(entries)
                for dn, a in entries:
                    u = _uuid_of(a)
                    ext = batch.by_dn[dn]
                    found_users.add(u)
                    old = index.ext.get(u)
                    if old is not None and old != ext:
                        removed_users.add(old)
                    index.kind[u], index.ext[u] = "user", ext
            batch.finish()
            # The DN and uid indexes follow renames and moves.
            moved = set(batch.by_dn.values())
            stale = {dn for dn, ext in mapper.by_dn.items() if ext in moved}
            for dn in stale:
                del mapper.by_dn[dn]
            # Only a DN or uid that appeared or went changes what groups resolve to.
            appeared = set(batch.by_dn) - stale
            touched_dns.update(map(_norm, stale - set(batch.by_dn)))
            touched_dns.update(map(_norm, appeared))
            old_uids = {k for k, e in mapper.by_uid.items() if e in moved}
            touched_uids.update(old_uids ^ set(batch.by_uid))
            mapper.by_dn.update(batch.by_dn)
            mapper.by_uid.update(batch.by_uid)
            mapper._by_norm = None
            users.update({u.external_id: u for u in batch.users})
            skipped.extend(batch.skipped)
            for raw, u in self._groups(f"(&{r.group_search}(|{uuids}))"):
                index.kind[u], index.ext[u] = "group", raw.external_id
                old_g = index.groups.get(u)
                if old_g is not None:
                    touched_dns.add(_norm(old_g.dn))
                touched_dns.add(_norm(raw.dn))
                index.groups[u] = raw
                index.listed.pop(u, None)
                groups_raw[u] = raw
        for u in changed:
            if u in found_users or u in groups_raw:
                continue
            deleted.add(u)  # moved out of the searched bases, or filtered out now
        for u in deleted:
            kind, ext = index.kind.pop(u, ""), index.ext.pop(u, "")
            if kind == "user":
                removed_users.add(ext)
                for dn in [dn for dn, e in mapper.by_dn.items() if e == ext]:
                    del mapper.by_dn[dn]
                    touched_dns.add(_norm(dn))
                for k in [k for k, e in mapper.by_uid.items() if e == ext]:
                    del mapper.by_uid[k]
                    touched_uids.add(k)
                mapper._by_norm = None
            elif kind == "group":
                removed_groups.add(ext)
                gone = index.groups.pop(u, None)
                index.listed.pop(u, None)
                if gone is not None:
                    touched_dns.add(_norm(gone.dn))
        # Groups that list an entry that arrived, moved or left are resolved again.
        touched = touched_dns | touched_uids
        if touched:
            for u, raw in index.groups.items():
                if u not in groups_raw and not touched.isdisjoint(index.members_of(u)):
                    groups_raw[u] = raw
        resolver = GroupResolver(mapper, list(index.groups.values()))
        resolver._group_norm()
        resolver.groups = list(groups_raw.values())
        groups = {g.external_id: g for g in resolver.resolve()}
        removed_users -= set(users)
        removed_users -= {sk.external_id for sk in skipped}
        seen = dict.fromkeys([*users, *groups, *removed_users, *removed_groups], now)
        self._cookie = pending.cookie or self._cookie
        return Changes(
            self._cookie,
            users,
            groups,
            frozenset(removed_users),
            frozenset(removed_groups - set(groups)),
            tuple(skipped),
            seen,
        )

    def _search(
        self, base: str, scope: Any, filterstr: str, attrs: list[str]
    ) -> Iterable[list[tuple[str, dict[str, list[bytes]]]]]:
        """A paged search on the stream's connection, beside its persistent search."""
        assert self._wire is not None
        return self._wire.search(base, scope, filterstr, attrs, page_size=self.settings.page_size)


def _norm(dn: str) -> str:
    try:
        return normalize_dn(dn)
    except DNError:  # a malformed member value names nobody
        return dn.lower()


def _listed(raw: RawGroup) -> frozenset[str]:
    out: set[str] = set()
    for attr, value in raw.members:
        text = value.decode("utf-8", "replace").strip()
        if attr == "memberuid" or "=" not in text:
            out.add(text.casefold())
            continue
        if attr == "uniquemember":
            text = strip_uid_suffix(text)
        out.add(_norm(text))
    return frozenset(out)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _uuid_of(attrs: dict[str, list[bytes]]) -> str:
    for k, v in attrs.items():
        if k.lower() == "entryuuid" and v:
            return str(uuidlib.UUID(v[0].decode()))
    return ""


def _first(values: list[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace").strip() if values else ""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _supported_controls(wire: PyLdapWire) -> set[str]:
    out: set[str] = set()
    for page in wire.search("", "base", "(objectClass=*)", ["supportedControl"], page_size=0):
        for _, attrs in page:
            out.update(v.decode() for v in lowered(attrs).get("supportedcontrol", ()))
    return out
